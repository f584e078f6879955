"""Records the sessionizer cannot use become dead letters with the reason, and the partition goes
on: a record that crashed the sessionizer would crash it again at every restart."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from contracts.events import DeadLetter
from contracts.kafka import ensure_topics, new_producer, read_to_end
from contracts.settings import Settings
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import Sessionizer
from tests.support.factories import make_event
from tests.support.pipeline import committed


async def test_garbage_and_a_year_one_event_become_dead_letters_and_the_rest_goes_on(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    topics = settings.topics
    good = make_event("page", visitor="v1")
    later = make_event("track", "Product Viewed", visitor="v1", event_id="e-later")
    year_one = orjson.loads(make_event("page", visitor="v1", event_id="e-old").to_bytes())
    year_one["timestamp"] = "0001-01-01T00:05:00Z"
    key = good.partition_key  # all on one partition, in this order
    producer: AIOKafkaProducer = new_producer(settings)
    await producer.start()
    try:
        for value in (good.to_bytes(), b"not json", orjson.dumps(year_one), later.to_bytes()):
            await producer.send_and_wait(topics.events, value, key=key)
    finally:
        await producer.stop()

    registry = CollectorRegistry()
    gauge = registry.get_sample_value
    stop = asyncio.Event()
    run = asyncio.create_task(Sessionizer(settings, SessionizerMetrics(registry)).run(stop))
    deadline = time.monotonic() + 60
    while (
        await committed(settings, topics.identities_group) < 4
        or gauge("klantreis_sessionizer_journey_events_total") != 2
        # the gauges are refreshed every few seconds
        or gauge("klantreis_sessionizer_state_entries", {"stage": "journeys"}) != 1
    ):
        assert not run.done(), run
        assert time.monotonic() < deadline, [(m.name, m.samples) for m in registry.collect()]
        await asyncio.sleep(0.1)
    # One visitor, one journey, its session still open; two records refused.
    assert gauge("klantreis_sessionizer_active_journeys") == 1
    assert gauge("klantreis_sessionizer_open_sessions") == 1
    assert gauge("klantreis_sessionizer_undecodable_events_total") == 2
    stop.set()
    await run

    bootstrap = settings.require_kafka()
    letters = [
        DeadLetter.from_bytes(r.value or b"")
        for batch in (await read_to_end(bootstrap, topics.dead_letters, 3)).values()
        for r in batch
    ]
    assert sorted(letter.message.split(": ", 1)[1] for letter in letters) == [
        "JSON is malformed: invalid character (byte 4)",
        "an event before 1970",
    ]
    assert {(letter.stage, letter.reason.value) for letter in letters} == {
        ("sessionizer", "undecodable")
    }
    transitions = [
        orjson.loads(r.value or b"")
        for batch in (await read_to_end(bootstrap, topics.transitions, 3)).values()
        for r in batch
    ]
    # Both good events were processed: the page view entered the journey, the product view
    # moved it on.
    assert [(t["kind"], t["event_id"]) for t in transitions] == [
        ("entered", good.event_id),
        ("advanced", "e-later"),
    ]
    assert datetime.fromisoformat(transitions[0]["at"]) > datetime(1970, 1, 1, tzinfo=UTC)
