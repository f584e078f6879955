"""Events for unit tests, built the way the collector builds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from klantreis.events import Event, EventContext, EventType, PageContext

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_event(
    kind: str = "page",
    name: str | None = None,
    *,
    visitor: str = "anon-1",
    user_id: str | None = None,
    at: timedelta = timedelta(0),
    event_id: str | None = None,
    url: str | None = None,
    **properties: Any,
) -> Event:
    timestamp = T0 + at
    return Event(
        event_id=event_id or f"{visitor}-{kind}-{name}-{at.total_seconds()}",
        site_id="shop",
        type=EventType(kind),
        event=name,
        anonymous_id=visitor,
        user_id=user_id,
        timestamp=timestamp,
        received_at=timestamp,
        properties=properties,
        context=EventContext(page=PageContext(url=url)),
    )
