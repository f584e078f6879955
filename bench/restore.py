"""How long the sessionizer takes to rebuild its state from the changelogs (a replacement
instance, a rebalance), against reading the same changelog records without applying them,
measured in the same run on a local broker.

    .venv/bin/python bench/restore.py [--visitors 100000] [--partitions 6]

Writes `--visitors` simulated visitors' events to a fresh events topic, runs both sessionizer
stages over them until both have committed everything, then rebuilds every partition's state of
each stage from its changelog (as an instance does on assignment) and checks it equals the
running state. The baseline reads the same changelog partitions to their end with a bare
consumer. Prints the seconds of each, the ratio, and the restore time per 100,000 visitors.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from contracts.kafka import new_consumer, write_events
from contracts.settings import Settings, load_settings
from klantreis.local_kafka import LocalKafka
from klantreis.simulator import collected_events
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import IdentityEdge, JourneyEdge, StageWorker


async def read_changelogs(settings: Settings, partitions: int) -> int:
    """The baseline: every changelog record, read and dropped."""
    topics = [settings.topics.identities_changelog, settings.topics.journeys_changelog]
    assigned = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
    reader = new_consumer(settings, group_id=None, max_poll_records=10_000)
    await reader.start()
    try:
        reader.assign(assigned)
        await reader.seek_to_beginning(*assigned)
        ends = await reader.end_offsets(assigned)
        remaining = {tp for tp in assigned if ends[tp] > 0}
        records = 0
        while remaining:
            batches = await reader.getmany(*remaining, timeout_ms=1000)
            records += sum(len(batch) for batch in batches.values())
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await reader.stop()


async def committed_everything(settings: Settings, total: int, partitions: int) -> bool:
    reader = new_consumer(settings, group_id=settings.topics.identities_group)
    await reader.start()
    try:
        events = [TopicPartition(settings.topics.events, p) for p in range(partitions)]
        done = 0
        for tp in events:
            done += (await reader.committed(tp)) or 0
    finally:
        await reader.stop()
    if done < total:
        return False
    journeys = [TopicPartition(settings.topics.sessionizer_journeys, p) for p in range(partitions)]
    reader = new_consumer(settings, group_id=settings.topics.journeys_group)
    await reader.start()
    try:
        ends = await reader.end_offsets(journeys)
        for tp in journeys:
            # The last record of a partition may be a transaction marker: within one of the end.
            if ends[tp] - ((await reader.committed(tp)) or 0) > 1:
                return False
        return True
    finally:
        await reader.stop()


async def timed_restore(worker: StageWorker[Any]) -> float:
    """Seconds to rebuild the worker's partitions from the changelog; checks the result."""
    live = {partition: stage.snapshot() for partition, stage in worker.stages.items()}
    started = time.perf_counter()
    restored = await worker.restored_stages(sorted(live))
    seconds = time.perf_counter() - started
    assert {p: stage.snapshot() for p, stage in restored.items()} == live, "the state differs"
    return seconds


async def main(visitors: int, partitions: int) -> None:
    with LocalKafka() as broker:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"restore-{uuid.uuid4().hex[:8]}",
            topic_partitions=partitions,
            idle_after_seconds=0,
        )
        now = datetime(2026, 6, 1, tzinfo=UTC)
        events = collected_events(seed=3, visitors=visitors, days=30, now=now)
        await write_events(settings, events)
        metrics = SessionizerMetrics(CollectorRegistry())
        identities = StageWorker(settings, metrics, IdentityEdge(settings, metrics))
        journeys = StageWorker(settings, metrics, JourneyEdge(settings, metrics))
        stop = asyncio.Event()
        async with identities, journeys:
            running = [asyncio.create_task(identities.run(stop)),
                       asyncio.create_task(journeys.run(stop))]  # fmt: skip
            while not await committed_everything(settings, len(events), partitions):
                await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*running)
            restore = await timed_restore(identities) + await timed_restore(journeys)
        started = time.perf_counter()
        records = await read_changelogs(settings, partitions)
        baseline = time.perf_counter() - started
    print(f"{visitors:,} visitors, {len(events):,} events, {records:,} changelog records")
    print(f"reading the changelogs (baseline): {baseline:.2f} s")
    print(f"restoring both stages' state from them: {restore:.2f} s (equal to the running state)")
    print(f"ratio restore / read: {restore / baseline:.2f}")
    print(f"restore per 100k visitors: {restore * 100_000 / visitors:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.partitions))
