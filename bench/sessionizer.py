"""Sessionizer throughput against a bare consume loop, in one run on a real local broker.

    .venv/bin/python bench/sessionizer.py [--visitors 30000] [--partitions 6]

Writes simulated shop traffic to a fresh events topic, reads it once to warm the broker, then
reads all of it with:

1. a bare aiokafka consume loop (decode nothing, commit per batch): the baseline;
2. the floor of any exactly-once stage that writes each event once: the sessionizer's worker
   with a stage that forwards every record unchanged, outputs and offsets in one transaction
   per batch, as the identity stage must;
3. the sessionizer's two stages (identities: hold each event to put the stream back in time
   order, decode, drop duplicates, route each event to its journey's partition; journeys: decode
   again, sessions, phases, timers; each with outputs, changelog and offsets in one transaction
   per batch);
4. the same without the hold (`KLANTREIS_REORDER_SECONDS=0`), on a copy of the input: what
   putting events back in time order costs.

All run in this process, one event loop, so each uses at most one core; the broker runs beside
them. Beside them, without Kafka: decoding the events with the event model, and the two stages'
logic on all events in memory. Prints events/s, events per CPU-second of this process, the
ratios, and the bytes of state per active visitor (the compacted changelogs: the latest key and
value of every entry). The default input is large enough that joining the consumer groups and
starting the producers weighs little.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from contracts.events import Event
from contracts.kafka import RecordBatches, new_consumer, read_to_end, write_events
from contracts.settings import Settings, load_settings
from klantreis.local_kafka import LocalKafka
from klantreis.runtime import tune_garbage_collection
from klantreis.simulator import collected_events
from services.sessionizer.config import journey_rules
from services.sessionizer.encoding import routed_from_record, routed_headers, routed_value
from services.sessionizer.stages import IdentityStage, JourneyStage, upstream_watermarks
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import (
    IdentityEdge,
    OwnedPartition,
    Sessionizer,
    StageWorker,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def cpu_seconds(run: Callable[[], None]) -> float:
    cpu = time.process_time()
    run()
    return time.process_time() - cpu


async def timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def bare_loop(settings: Settings, total: int) -> None:
    consumer = new_consumer(
        settings,
        settings.topics.events,
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


class ForwardEdge(IdentityEdge):
    """A stage that writes every event it reads, unchanged, to its own topic: the identity
    stage's Kafka work (read, one write per event, a changelog record and the offsets in one
    transaction per batch) without its logic."""

    name = "forward"

    def __init__(self, settings: Settings, metrics: SessionizerMetrics, input_topic: str) -> None:
        super().__init__(settings, metrics)  # its topics, group and changelog under its prefix
        self.input_topic = input_topic

    def process(
        self, owned: OwnedPartition[IdentityStage], records: list[ConsumerRecord[bytes, bytes]],
        batches: RecordBatches,
    ) -> int:  # fmt: skip
        output = self.topics.sessionizer_journeys
        for record in records:
            batches.add(output, record.value, record.key)
        return len(records)


async def forward_floor(settings: Settings, total: int) -> None:
    floor = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}-floor"})
    metrics = SessionizerMetrics(CollectorRegistry())
    steps = ForwardEdge(floor, metrics, settings.topics.events)
    stop = asyncio.Event()
    async with StageWorker(floor, metrics, steps) as worker:
        task = asyncio.create_task(worker.run(stop))
        while metrics.events_processed._value.get() < total:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
        stop.set()
        await task


def decode_only(values: list[bytes]) -> None:
    for value in values:
        Event.from_bytes(value)


def logic_in_memory(settings: Settings, values: list[bytes]) -> None:
    """Both stages' logic on one partition each, with the hop's encoding and decoding but no
    Kafka: a batch of events through the identity stage, its records through the journey
    stage, outputs encoded, state changes taken."""
    rules = journey_rules(settings)
    identities, journeys = IdentityStage(rules, 0), JourneyStage(rules, upstream_partitions=1)
    for start in range(0, len(values), settings.sessionizer_max_poll_records):
        hop: list[tuple[bytes, list[tuple[str, bytes]]]] = []
        for value in values[start : start + settings.sessionizer_max_poll_records]:
            event = Event.from_bytes(value)
            links, routed = identities.route(event)
            for link in links:
                link.to_bytes()
            for one in routed:
                hop.append(
                    (value if one.event is event else routed_value(one), routed_headers(one))
                )
        for _, marker in upstream_watermarks(0, identities.newest, [0]):
            hop.append((b"", routed_headers(marker)))
        identities.take_changes()
        for value, headers in hop:
            outputs, handoffs = journeys.process(routed_from_record(value, headers))
            for output in outputs:
                output.to_bytes()
            for handoff in handoffs:
                routed_value(handoff)
        journeys.take_changes()


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
    topics = settings.topics
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
        await bare_loop(settings, total)  # warms the broker: its first read comes from disk
        bare_wall, bare_cpu = await timed(lambda: bare_loop(settings, total))
        floor_wall, floor_cpu = await timed(lambda: forward_floor(settings, total))
        sess_wall, sess_cpu = await timed(lambda: sessionizer(settings, total))
        size, devices = await state_bytes(settings)
        unheld = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"{settings.topic_prefix}-unheld",
            topic_partitions=partitions,
            reorder_seconds=0,
        )
        await write_events(unheld, events)
        unheld_wall, unheld_cpu = await timed(lambda: sessionizer(unheld, total))
    values = [event.to_bytes() for event in events]
    decode_cpu = cpu_seconds(lambda: decode_only(values))
    logic_cpu = cpu_seconds(lambda: logic_in_memory(settings, values))

    def line(what: str, wall: float | None, cpu: float) -> None:
        rate = "" if wall is None else f"{total / wall:10,.0f} events/s"
        print(f"{what:<44}{rate:>18}   {total / cpu:10,.0f} events per CPU-second")

    print(f"events: {total} from {visitors} simulated visitors, {partitions} partitions")
    line("bare consume loop", bare_wall, bare_cpu)
    line("floor: forward each event, exactly once", floor_wall, floor_cpu)
    line("sessionizer (two stages, exactly once)", sess_wall, sess_cpu)
    line("sessionizer without the reorder hold", unheld_wall, unheld_cpu)
    line("without Kafka: decode each event once", None, decode_cpu)
    line("without Kafka: both stages' logic", None, logic_cpu)
    # Every event crosses two exactly-once stages and is decoded in each: what that alone costs.
    line("two stages' floor: 2 forwards + 2 decodes", None, 2 * (floor_cpu + decode_cpu))
    print(f"ratio sessionizer / bare (events/s): {bare_wall / sess_wall:.2f}")
    print(f"ratio floor / bare (events/s): {bare_wall / floor_wall:.2f}")
    print(
        f"ratio sessionizer with a {settings.reorder_seconds:g} s hold / without (events/s): "
        f"{unheld_wall / sess_wall:.2f}"
    )
    print(f"state: {size / max(devices, 1):.0f} bytes per active visitor "
          f"({size:,} bytes for {devices} devices, changelog keys and values)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=30000)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.partitions))
