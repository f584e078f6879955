"""Sessionizer throughput against a bare consume loop, in one run on a real local broker.

    .venv/bin/python bench/sessionizer.py [--visitors 6000] [--partitions 6]

Writes simulated shop traffic to a fresh events topic, then reads all of it twice: first with a
bare aiokafka consume loop (decode nothing, commit per batch), then with the sessionizer's two
stages (identities: decode, drop duplicates, route each event to its journey's partition; journeys:
decode again, sessions, phases, timers; each with outputs, changelog and offsets in one
transaction per batch). Both run in this process, one event loop, so both use at most one core;
the broker runs beside them. Prints events/s, events per CPU-second of this process, the ratio,
and the bytes of state per active visitor (the compacted changelogs: the latest key and value of
every entry).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from klantreis.config import Settings, load_settings
from klantreis.kafka import new_consumer, read_to_end, write_events
from klantreis.local_kafka import LocalKafka
from klantreis.runtime import tune_garbage_collection
from klantreis.simulator import collected_events
from klantreis.topics import Topics
from services.sessionizer.metrics import SessionizerMetrics
from services.sessionizer.worker import Sessionizer

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def bare_loop(settings: Settings, total: int) -> None:
    consumer = new_consumer(
        settings,
        Topics.from_settings(settings).events,
        group_id=f"bare-{uuid.uuid4().hex}",
        max_poll_records=settings.sessionizer_max_poll_records,  # as large as the sessionizer's
    )
    await consumer.start()
    try:
        seen = 0
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()


async def sessionizer(settings: Settings, total: int) -> None:
    metrics = SessionizerMetrics(CollectorRegistry())

    def done() -> bool:
        """Both stages are through: every event read, every routed one applied."""
        read = metrics.events_processed._value.get()
        dropped = metrics.duplicates._value.get() + metrics.undecodable_events._value.get()
        return bool(read >= total and metrics.journey_events._value.get() >= read - dropped)

    stop = asyncio.Event()
    task = asyncio.create_task(Sessionizer(settings, metrics).run(stop))
    while not done():
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
    stop.set()
    await task


async def state_bytes(settings: Settings) -> tuple[int, int]:
    """(bytes of the latest key and value of every entry of both stages' changelogs, number
    of device entries)."""
    topics = Topics.from_settings(settings)
    latest: dict[tuple[str, int, bytes], int] = {}
    for changelog in (topics.identities_changelog, topics.journeys_changelog):
        records = await read_to_end(
            str(settings.kafka_bootstrap_servers), changelog, settings.topic_partitions
        )
        for partition, batch in records.items():
            for record in batch:
                key = record.key or b""
                size = len(key) + len(record.value) if record.value is not None else 0
                latest[(changelog, partition, key)] = size  # a deleted key holds nothing
    visitors = sum(
        1 for (changelog, _, key) in latest
        if changelog == topics.identities_changelog and key.startswith(b"i\x1f")
    )  # fmt: skip
    return sum(latest.values()), visitors


async def main(visitors: int, partitions: int) -> None:
    tune_garbage_collection()  # as `klantreis sessionizer` does, for both loops
    events = collected_events(seed=9, visitors=visitors, days=30, now=NOW)
    with LocalKafka() as broker:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            topic_partitions=partitions,
        )
        await write_events(settings, events)
        total = len(events)
        bare_wall, bare_cpu = await timed(lambda: bare_loop(settings, total))
        sess_wall, sess_cpu = await timed(lambda: sessionizer(settings, total))
        size, devices = await state_bytes(settings)

    print(f"events: {total} from {visitors} simulated visitors, {partitions} partitions")
    print(
        f"bare consume loop:  {total / bare_wall:10,.0f} events/s   "
        f"{total / bare_cpu:10,.0f} events per CPU-second"
    )
    print(
        f"sessionizer:        {total / sess_wall:10,.0f} events/s   "
        f"{total / sess_cpu:10,.0f} events per CPU-second"
    )
    print(f"ratio sessionizer / bare (events/s): {bare_wall / sess_wall:.2f}")
    print(f"state: {size / max(devices, 1):.0f} bytes per active visitor "
          f"({size:,} bytes for {devices} devices, changelog keys and values)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=6000)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.partitions))
