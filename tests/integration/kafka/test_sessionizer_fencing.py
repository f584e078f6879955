"""A fenced sessionizer does not go on past the commit that failed.

A newer producer with a partition's transactional id (a second instance that took the partition
over while this one hung) fences this one: its next commit fails. Going on would commit later
offsets of that partition past records whose outputs were never committed. The broker says so
with PRODUCER_FENCED, which ends the run with the error; when the fence lands in the middle of a
commit the broker may instead answer an unknown server error, which reads as an outage, and the
sessionizer starts again from the last commit. Either way the input is then finished, and every
output was committed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from aiokafka.errors import ProducerFenced
from prometheus_client import CollectorRegistry

from contracts.kafka import new_producer, read_to_end, write_events
from contracts.settings import Settings
from klantreis.simulator import collected_events
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import Sessionizer
from tests.support.pipeline import committed

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def test_a_fenced_sessionizer_starts_again_from_its_last_commit(
    settings: Settings,
) -> None:
    events = collected_events(seed=4, visitors=300, days=5, now=NOW)
    half = len(events) // 2
    topics = settings.topics
    group = topics.identities_group
    await write_events(settings, events[:half])
    stop = asyncio.Event()
    registry = CollectorRegistry()
    run = asyncio.create_task(Sessionizer(settings, SessionizerMetrics(registry)).run(stop))
    while await committed(settings, group) < half:
        assert not run.done(), run
        await asyncio.sleep(0.1)
    # Fence every partition's transactional producers, of both stages, as a newer instance would.
    for stage_group in (topics.identities_group, topics.journeys_group):
        for partition in range(settings.topic_partitions):
            usurper = new_producer(settings, transactional_id=f"{stage_group}.{partition}")
            await usurper.start()
            await usurper.stop()
    await write_events(settings, events[half:])

    def restarts() -> float:
        return sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "klantreis_sessionizer_restarts"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    async with asyncio.timeout(60):
        while not run.done() and restarts() == 0:
            await asyncio.sleep(0.1)
    if run.done():
        assert isinstance(run.exception(), ProducerFenced), run
        assert await committed(settings, group) < len(events)
        stop = asyncio.Event()
        run = asyncio.create_task(
            Sessionizer(settings, SessionizerMetrics(CollectorRegistry())).run(stop)
        )
    while await committed(settings, group) < len(events):
        assert not run.done(), run
        await asyncio.sleep(0.1)
    stop.set()
    await run

    written = await read_to_end(
        str(settings.kafka_bootstrap_servers), topics.transitions, settings.topic_partitions
    )
    transitions = Counter(r.value for batch in written.values() for r in batch)
    assert transitions, "the journeys made no phase transitions"
    assert max(transitions.values()) == 1, "a transition was committed twice"
