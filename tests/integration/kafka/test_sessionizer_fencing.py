"""A sessionizer whose transaction fails stops instead of going on past it.

A newer producer with a partition's transactional id (a second instance that took the partition
over while this one hung) fences this one: its next commit fails. Going on would commit later
offsets of that partition past records whose outputs were never committed; the run must end
with the error, and a restarted sessionizer then finishes the input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from contracts.kafka import new_producer, write_events
from contracts.settings import Settings
from klantreis.simulator import collected_events
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import Sessionizer
from tests.support.pipeline import committed

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def test_a_fenced_sessionizer_stops_and_a_restart_finishes_the_input(
    settings: Settings,
) -> None:
    events = collected_events(seed=4, visitors=300, days=5, now=NOW)
    half = len(events) // 2
    topics = settings.topics
    group = topics.identities_group
    await write_events(settings, events[:half])
    stop = asyncio.Event()
    run = asyncio.create_task(
        Sessionizer(settings, SessionizerMetrics(CollectorRegistry())).run(stop)
    )
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
    with pytest.raises(KafkaError):
        await asyncio.wait_for(run, timeout=60)
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
