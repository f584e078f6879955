"""The native event API as clients send it (docs/event-api.md is its prose twin).

Top-level fields are strict: a typo such as `anonymousId` gets a precise error instead of an
event that silently lacks an id. Unknown keys inside `context` are dropped, because tracking
libraries add their own there. The OpenAPI document's request schema is generated from these
Structs (`api.install`), so the two never disagree.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import msgspec

from contracts.events import (
    CampaignContext,
    EventType,
    Library,
    Locale,
    PageContext,
    UserAgent,
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
# A time on the client's clock: ISO 8601 with a time-zone offset, or Unix time (seconds, or
# milliseconds past 2e10, as JavaScript's Date.now() gives), read by `checked`.
IsoTime = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="ISO 8601 with a time-zone offset, on the client's clock",
        extra_json_schema={"format": "date-time"},
    ),
]
UnixTime = Annotated[
    float, msgspec.Meta(description="Unix time: seconds, or milliseconds when above 2e10")
]
ClientTime = IsoTime | UnixTime
_MILLISECONDS_ABOVE = 2e10


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
    group_id: Identifier | None = None  # a group event's account or company
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


class CheckedEvent(NamedTuple):
    """An incoming event that keeps every rule, with its client times read, in UTC."""

    event: IncomingEvent
    timestamp: datetime | None
    sent_at: datetime | None


# Properties with a meaning the metrics add up (docs/event-api.md, "Numbers"): each a finite
# JSON number within its bounds, or the event is refused, so that no total is ever corrupted.
AMOUNTS = frozenset({"revenue", "total", "value", "price", "subtotal", "shipping", "tax",
                     "discount"})  # fmt: skip
DEFAULT_MAX_AMOUNT = 1e9
MAX_QUANTITY = 1_000_000
SCORES = frozenset({"score", "rating"})
MAX_SCORE = 10


def check_numbers(properties: dict[str, Any], max_amount: float, where: str = "properties") -> None:
    """Amounts are 0 to `max_amount` (a refund is its own event, `Order Refunded`, with a
    positive amount), quantities whole numbers, scores 0 to 10; also in each of `products`."""
    for name, value in properties.items():
        field = f"{where}.{name}"
        if name in AMOUNTS:
            _number(field, value, 0, max_amount)
        elif name == "quantity":
            _number(field, value, 0, MAX_QUANTITY)
            if value != int(value):
                raise EventProblem(field, "must be a whole number")
        elif name in SCORES:
            _number(field, value, 0, MAX_SCORE)
    products = properties.get("products")
    if isinstance(products, list):
        for index, product in enumerate(products):
            if isinstance(product, dict):
                check_numbers(product, max_amount, f"{where}.products.{index}")


def _number(field: str, value: Any, lowest: float, highest: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventProblem(field, f"must be a number, got {type(value).__name__} {value!r:.40}")
    if not math.isfinite(value) or not lowest <= value <= highest:
        hint = " (a refund is an `Order Refunded` event)" if value < 0 else ""
        raise EventProblem(field, f"{value!r} is outside {lowest:g} to {highest:g}{hint}")


def checked(incoming: IncomingEvent, max_amount: float = DEFAULT_MAX_AMOUNT) -> CheckedEvent:
    """The rules a schema cannot say: real ids, the fields each type needs, numbers with a
    meaning, the client's times (read into UTC); raises EventProblem."""
    check_numbers(incoming.properties, max_amount)
    for field in ("anonymous_id", "user_id", "previous_id", "group_id"):
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
    if (incoming.type is EventType.GROUP) != (incoming.group_id is not None):
        raise EventProblem(
            "group_id", "a group event needs group_id, and only a group event has one"
        )
    return CheckedEvent(
        incoming,
        _client_time("timestamp", incoming.timestamp),
        _client_time("sent_at", incoming.sent_at),
    )


def _client_time(field: str, value: str | float | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EventProblem(
                field, f"{value!r} is not an ISO 8601 time such as 2026-11-23T10:15:00Z"
            ) from None
        if parsed.tzinfo is None:
            raise EventProblem(field, "Input should have timezone info")
    else:
        seconds = value / 1000 if abs(value) > _MILLISECONDS_ABOVE else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise EventProblem(field, "the time is out of the range of dates") from None
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before year 1 in UTC
        raise EventProblem(field, "the time is out of the range of dates in UTC") from None
