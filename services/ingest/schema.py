"""The native event API as clients send it (docs/event-api.md is its prose twin).

Top-level fields are strict: a typo such as `anonymousId` gets a precise error instead of an
event that silently lacks an id. Unknown keys inside `context` are dropped, because tracking
libraries add their own there. The OpenAPI document's request schema is generated from these
Structs (`api.install`), so the two never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from contracts.events import (
    CampaignContext,
    EventType,
    Library,
    Locale,
    PageContext,
    UserAgent,
    UtcDatetime,
)

# Placeholders that broken clients send instead of an id; treating them as ids would merge
# every such visitor into one journey.
RESERVED_IDS = frozenset({"anonymous", "null", "undefined", "none", "nil", "0", "-1", "guest"})

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
EventId = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=128, description="Client-generated UUID used to drop duplicates."
    ),
]
ClientTime = Annotated[
    UtcDatetime, msgspec.Meta(description="ISO 8601 with a time-zone offset, on the client's clock")
]


class IncomingContext(msgspec.Struct, frozen=True):
    page: PageContext = msgspec.field(default_factory=PageContext)
    campaign: CampaignContext = msgspec.field(default_factory=CampaignContext)
    user_agent: UserAgent | None = None
    locale: Locale | None = None
    library: Library | None = None
    ip: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=64,
                description="Server-side senders may pass the visitor's IP; it is never stored.",
            ),
        ]
        | None
    ) = None


class IncomingEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_id: EventId | None = None
    type: EventType
    event: Name | None = None  # a track event's name
    name: Name | None = None  # a page's name
    anonymous_id: Identifier | None = None
    user_id: Identifier | None = None
    previous_id: Identifier | None = None
    timestamp: ClientTime | None = None  # when the event happened
    sent_at: ClientTime | None = None  # when the client sent the request, on the same clock
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    context: IncomingContext = msgspec.field(default_factory=IncomingContext)


class EventProblem(ValueError):
    """A decoded event that breaks a rule; `field` is where, or '' for the event as a whole."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def checked(incoming: IncomingEvent) -> IncomingEvent:
    """The rules a schema cannot say: real ids, the fields each type needs, times in UTC.
    Returns the event with its times in UTC; raises EventProblem."""
    for field in ("anonymous_id", "user_id", "previous_id"):
        value = getattr(incoming, field)
        if value is not None:
            if not value.strip():
                raise EventProblem(field, "must not be blank")
            if value.strip().lower() in RESERVED_IDS:
                raise EventProblem(field, f"{value!r} is a placeholder, not an id")
    if incoming.anonymous_id is None and incoming.user_id is None:
        raise EventProblem("", "an event needs anonymous_id or user_id (or both)")
    if incoming.type is EventType.TRACK and incoming.event is None:
        raise EventProblem("", "a track event needs `event`, its name (e.g. 'Product Viewed')")
    if incoming.type is not EventType.TRACK and incoming.event is not None:
        raise EventProblem(
            "", f"`event` is only for track events; a {incoming.type} event has none"
        )
    if incoming.type is not EventType.PAGE and incoming.name is not None:
        raise EventProblem("", "`name` is only for page events")
    if incoming.type is EventType.ALIAS and (
        incoming.previous_id is None or incoming.user_id is None
    ):
        raise EventProblem("", "an alias event needs previous_id and user_id")
    timestamp, sent_at = (
        _in_utc("timestamp", incoming.timestamp),
        _in_utc("sent_at", incoming.sent_at),
    )
    if timestamp is incoming.timestamp and sent_at is incoming.sent_at:
        return incoming
    return msgspec.structs.replace(incoming, timestamp=timestamp, sent_at=sent_at)


def _in_utc(field: str, value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before year 1 in UTC
        raise EventProblem(field, "the time is out of the range of dates in UTC") from None
