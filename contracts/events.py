"""The internal event: what the collector writes to Kafka and every later stage reads.

It is the client's event after validation and enrichment: the site is resolved from the write key,
the event time is corrected for client clock skew, and the client's IP address is gone.

Records are `msgspec.Struct`s: decoded and validated in one pass where they enter a stage
(`from_bytes`), and trusted from there on. Every time on a record is UTC with `datetime.UTC` as
its zone (the collector converts client offsets); besides one zone for everything downstream,
datetimes sharing one tzinfo object compare and subtract in C, and the sessionizer's timers make
dozens of comparisons per event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, Self

import msgspec

# A time on a record: timezone-aware (the encoder writes UTC as `Z`).
UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


def _kept(value: Any) -> Any:
    """A default that is written out like any value. Structs that leave their defaults out of
    the JSON (`omit_defaults`) then leave out only the fields whose default is None: an empty
    field costs nothing on the wire, and a reader (ClickHouse's JSON insert included) still
    finds every field that has a value. (msgspec leaves a value out when it equals a plain
    default or the output of the factories `dict` and `list`; it cannot compare with the output
    of any other factory.)"""
    if value == {}:
        return msgspec.field(default_factory=lambda: {})
    return msgspec.field(default_factory=lambda: value)


@cache
def _decoder(record_type: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(record_type)


_ENCODER = msgspec.json.Encoder()


class KafkaRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A record on a klantreis topic: immutable, strict, JSON on the wire, tagged with its
    schema version (a breaking change gets a new topic, docs/data-model.md)."""

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        """The record in `raw`, validated; raises `msgspec.DecodeError` (a ValidationError for
        a value of the wrong shape) saying where."""
        record: Self = _decoder(cls).decode(raw)
        return record

    @property
    def partition_key(self) -> bytes:
        """The Kafka key: records of one key stay in order on one partition."""
        raise NotImplementedError


RecordError = msgspec.DecodeError  # what `from_bytes` raises for bytes that are not the record


class EventType(StrEnum):
    PAGE = "page"
    TRACK = "track"
    IDENTIFY = "identify"
    ALIAS = "alias"
    GROUP = "group"  # the account or company a user belongs to (B2B shops), with its traits


Url = Annotated[str, msgspec.Meta(max_length=2048)]
Title = Annotated[str, msgspec.Meta(max_length=1024)]
Utm = Annotated[str, msgspec.Meta(max_length=256)]
UserAgent = Annotated[str, msgspec.Meta(max_length=1024)]
Locale = Annotated[str, msgspec.Meta(max_length=64)]
Library = Annotated[str, msgspec.Meta(max_length=128)]


class PageContext(msgspec.Struct, frozen=True, omit_defaults=True):
    url: Url | None = None
    path: Url | None = None
    referrer: Url | None = None
    title: Title | None = None
    search: Url | None = None


class CampaignContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """UTM parameters, named as Segment and GA name them (utm_campaign is `name`)."""

    source: Utm | None = None
    medium: Utm | None = None
    name: Utm | None = None
    term: Utm | None = None
    content: Utm | None = None


class EventContext(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    page: PageContext = _kept(PageContext())
    campaign: CampaignContext = _kept(CampaignContext())
    user_agent: UserAgent | None = None
    locale: Locale | None = None
    library: Library | None = None


class Event(
    KafkaRecord, frozen=True, kw_only=True, omit_defaults=True, tag_field="schema_version", tag=1
):
    """One enriched event. Timestamps are timezone-aware UTC; `timestamp` is the event time.

    `channel` is the default channel group of the visit; `device` one of desktop, mobile,
    tablet, bot, unknown; `browser` the browser family from the user agent; `is_bot` flags a bot
    or headless browser (kept, flagged)."""

    event_id: str
    site_id: str
    type: EventType
    event: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    timestamp: UtcDatetime
    original_timestamp: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None
    received_at: UtcDatetime
    channel: str = _kept("direct")
    device: str = _kept("unknown")
    browser: str = _kept("unknown")
    is_bot: bool = _kept(False)
    properties: dict[str, Any] = _kept({})
    traits: dict[str, Any] = _kept({})
    context: EventContext = _kept(EventContext())

    @property
    def visitor_id(self) -> str:
        """The id the collector partitions by: the device's anonymous id, else the user id.

        Keeping one device on one partition keeps its events in order for the sessionizer. An
        alias goes with the id it merges away (`previous_id`), where that id's state lives.
        """
        if self.type is EventType.ALIAS and self.previous_id:
            return self.previous_id
        visitor = self.anonymous_id or self.user_id
        assert visitor is not None, "validated events carry anonymous_id or user_id"
        return visitor

    @property
    def partition_key(self) -> bytes:
        return f"{self.site_id}/{self.visitor_id}".encode()


# No event happens before this: the collector refuses earlier ones and the sessionizer routes
# any that reach it to the dead letters. No shop tracked anyone then, and event-time arithmetic
# (a watermark minutes before the newest event) needs room before it.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)


# How long a request may take to arrive (a CORS preflight first, a slow mobile network) before
# the gap between its sent_at and its arrival is read as a wrong client clock.
TRAVEL_TIME_TOLERANCE = timedelta(seconds=10)


def correct_clock_skew(
    client_timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """The event time on the server's clock.

    A client's clock can be off by hours; the offset between when it says it sent a request and
    when the server received it measures that error, and the same error applies to when the event
    happened: `timestamp + (received_at - sent_at)`. A request that arrived up to
    `TRAVEL_TIME_TOLERANCE` after it was sent only travelled: its events keep the client's
    times. Otherwise two requests of one page (the first held up by its preflight) would get
    different corrections and swap the order of the events they carry.
    """
    if client_timestamp is None:
        return received_at
    if sent_at is None:
        return client_timestamp
    offset = received_at - sent_at
    if timedelta(0) <= offset <= TRAVEL_TIME_TOLERANCE:
        return client_timestamp
    return client_timestamp + offset


DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024

Stage = Literal["ingest", "sessionizer", "metrics"]


class DeadLetterReason(StrEnum):
    SCHEMA_VIOLATION = "schema_violation"
    SIZE_VIOLATION = "size_violation"
    UNDECODABLE = "undecodable"
    LATE_EVENT = "late_event"


class DeadLetter(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    """Input that was refused, kept with the reason so nothing vanishes without a trace.

    `payload` is the refused input, cut to the first 64 KiB; `stage` the service that refused
    it (ingest, sessionizer or metrics)."""

    site_id: str | None
    reason: DeadLetterReason
    message: str
    payload: str
    stage: Stage
    received_at: UtcDatetime

    @property
    def partition_key(self) -> bytes:
        return (self.site_id or "").encode()

    @classmethod
    def of(
        cls,
        payload: bytes | None,
        reason: DeadLetterReason,
        message: str,
        stage: Stage,
        site_id: str | None = None,
        received_at: datetime | None = None,
    ) -> DeadLetter:
        return cls(
            site_id=site_id,
            reason=reason,
            message=message,
            payload=(payload or b"")[:DEAD_LETTER_PAYLOAD_LIMIT].decode(errors="replace"),
            stage=stage,
            received_at=received_at or datetime.now(UTC),
        )
