"""How long a rotated write key takes to reach another collector, against a bare produce and
consume of one record on the same broker, measured in the same run.

    .venv/bin/python bench/site_pickup.py [--rounds 20]

Starts a local broker and two site stores on one sites topic (as two collectors, or a read API
and a collector, follow it). Each round rotates a site's write key through the first and waits
until the second knows the new key; the baseline is one record sent with the same producer
settings and read by a consumer already at the end of its topic. The issue's bound is 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import new_producer
from contracts.settings import Settings, load_settings
from contracts.sites import new_write_key
from contracts.sitestore import KafkaSiteStore, seed_of
from klantreis.local_kafka import LocalKafka


async def main(rounds: int) -> None:
    with LocalKafka() as broker:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            sites={"wk_bench": "shop"},
        )
        async with (
            KafkaSiteStore(settings, seed_of(settings)) as writer,
            KafkaSiteStore(settings) as follower,
        ):
            pickups = []
            for _ in range(rounds):
                key = new_write_key()
                started = time.perf_counter()
                site = writer.directory.sites["shop"]
                await writer.put(site.with_write_key(key, datetime.now(UTC)))
                while key not in follower.directory.write_keys:
                    await asyncio.sleep(0.001)
                pickups.append(time.perf_counter() - started)
        baseline = await round_trips(settings, rounds)
    pickup = statistics.median(pickups)
    print(f"rotated key reaches the other follower: {pickup * 1000:.0f} ms median "
          f"(max {max(pickups) * 1000:.0f} ms) over {rounds} rotations")  # fmt: skip
    print(f"bare produce-and-consume of one record (baseline): {baseline * 1000:.0f} ms median")
    print(f"ratio pickup / baseline: {pickup / baseline:.1f}")
    print(f"share of the 30 s bound: {pickup / 30:.2%}")


async def round_trips(settings: Settings, rounds: int) -> float:
    """One record at a time through partition 0 of the events topic (which the stores created)."""
    topic = settings.topics.events
    producer = new_producer(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.require_kafka(), enable_auto_commit=False
    )
    await producer.start()
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"{}", key=b"bench", partition=0)
            while not (await consumer.getmany(partition, timeout_ms=1000)).get(partition):
                pass
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
