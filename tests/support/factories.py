"""Events for unit tests, built the way the collector builds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import Event, EventContext, EventType, PageContext

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_counter = iter(range(10**9))


def make_event(
    kind: str = "page",
    name: str | None = None,
    *,
    visitor: str | None = "anon-1",
    user_id: str | None = None,
    previous_id: str | None = None,
    at: timedelta = timedelta(0),
    event_id: str | None = None,
    path: str | None = None,
    channel: str = "direct",
    site: str = "shop",
    **properties: Any,
) -> Event:
    timestamp = T0 + at
    return Event(
        event_id=event_id or f"e{next(_counter)}",
        site_id=site,
        type=EventType(kind),
        event=name,
        anonymous_id=visitor,
        user_id=user_id,
        previous_id=previous_id,
        timestamp=timestamp,
        received_at=timestamp,
        channel=channel,
        properties=properties,
        context=EventContext(
            page=PageContext(path=path, url=path and f"https://shop.example{path}")
        ),
    )
