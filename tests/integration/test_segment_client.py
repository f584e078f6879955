"""Segment's own Python library, unmodified, pointed at the collector: its track, page and
identify calls come out of Kafka as the same internal events the native API makes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from segment.analytics import Client

from klantreis.config import Settings
from klantreis.events import Event
from klantreis.local_kafka import free_port
from klantreis.topics import Topics
from tests.integration.conftest import SITE, WRITE_KEY
from tests.integration.processes import start, wait_for_http


async def read_events(settings: Settings, expected: int) -> list[Event]:
    topic = Topics.from_settings(settings).events
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed"
    )
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        events: list[Event] = []
        for _ in range(30):
            for records in (await reader.getmany(timeout_ms=500)).values():
                events += [Event.from_bytes(r.value or b"") for r in records]
            if len(events) >= expected:
                break
        return events
    finally:
        await reader.stop()


def comparable(event: Event) -> dict[str, object]:
    """What a sender decides about an event (not when the server received it, nor its id)."""
    return event.model_dump(
        include={"type", "event", "anonymous_id", "user_id", "properties", "traits", "channel"}
    ) | {"page": event.context.page.model_dump()}


async def test_segment_library_events_are_the_same_internal_events(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
        "KLANTREIS_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
        "PORT": str(port),
    }
    collector = start("ingest", ["ingest"], env, tmp_path)
    errors: list[object] = []
    try:
        wait_for_http(f"{base}/readyz", collector)
        when = datetime.now(UTC) - timedelta(minutes=5)
        page = {"url": "https://shop.example/tv?utm_source=newsletter&utm_medium=email"}
        client = Client(
            write_key=WRITE_KEY,
            host=base,
            sync_mode=True,
            on_error=lambda error, batch: errors.append(error),
        )
        client.page(
            anonymous_id="dev-1",
            name="TV",
            properties={"path": "/tv"},
            context={"page": page},
            timestamp=when,
        )
        client.track(
            anonymous_id="dev-1",
            event="Product Viewed",
            properties={"sku": "tv-55", "price": 899.0},
            context={"page": page},
            timestamp=when,
        )
        client.identify(user_id="cust-9", anonymous_id="dev-1", traits={"email_optin": True},
                        context={"page": page}, timestamp=when)  # fmt: skip
        client.flush()  # sync_mode: each call was sent as it was made
        native = [
            {"type": "page", "name": "TV", "anonymous_id": "dev-1", "properties": {"path": "/tv"}},
            {"type": "track", "event": "Product Viewed", "anonymous_id": "dev-1",
             "properties": {"sku": "tv-55", "price": 899.0}},
            {"type": "identify", "user_id": "cust-9", "anonymous_id": "dev-1",
             "traits": {"email_optin": True}},
        ]  # fmt: skip
        for event in native:
            event |= {"timestamp": when.isoformat(), "context": {"page": page}}
        response = httpx.post(f"{base}/v1/events", json=native, auth=(WRITE_KEY, ""))
        assert response.json() == {"accepted": 3}
    finally:
        assert collector.stop(), collector.output()
    assert errors == []

    events = await read_events(settings, 6)
    from_segment = [e for e in events if (e.context.library or "").startswith("analytics-python")]
    from_native = [e for e in events if e.context.library is None]
    assert len(from_segment) == len(from_native) == 3
    key = lambda e: (e.type.value, e.event or "")  # noqa: E731
    assert [comparable(e) for e in sorted(from_segment, key=key)] == [
        comparable(e) for e in sorted(from_native, key=key)
    ]
    assert all(abs(e.timestamp - when) < timedelta(seconds=5) for e in from_segment)
