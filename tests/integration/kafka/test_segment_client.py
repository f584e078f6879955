"""Segment's own Python library, unmodified, pointed at the collector: its track, page and
identify calls come out of Kafka as the same internal events the native API makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from segment.analytics import Client

from contracts.settings import Settings
from tests.support.pipeline import WRITE_KEY, comparable, read_events
from tests.support.processes import collector


async def test_segment_library_events_are_the_same_internal_events(
    settings: Settings, tmp_path: Path
) -> None:
    errors: list[object] = []
    with collector(settings, tmp_path) as base:
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
    assert errors == []

    events = await read_events(settings)
    from_segment = [e for e in events if (e.context.library or "").startswith("analytics-python")]
    from_native = [e for e in events if e.context.library is None]
    assert len(from_segment) == len(from_native) == 3
    key = lambda e: (e.type.value, e.event or "")  # noqa: E731
    assert [comparable(e) for e in sorted(from_segment, key=key)] == [
        comparable(e) for e in sorted(from_native, key=key)
    ]
    assert all(abs(e.timestamp - when) < timedelta(seconds=5) for e in from_segment)
