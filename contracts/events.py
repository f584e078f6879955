"""The internal event: what the collector writes to Kafka and every later stage reads.

It is the client's event after validation and enrichment: the site is resolved from the write key,
the event time is corrected for client clock skew, and the client's IP address is gone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before year 1 in UTC
        raise ValueError("the time is out of the range of dates in UTC") from None


# Every time on a klantreis record is UTC with `datetime.UTC` as its zone. Besides one zone for
# everything downstream, this is what keeps the sessionizer fast: datetimes sharing one tzinfo
# object compare and subtract in C, while pydantic's own per-value zone costs a Python call to
# `utcoffset` on every comparison, and the timer heap makes dozens per event.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]


class KafkaRecord(BaseModel):
    """A record on a klantreis topic: immutable, strict, JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        return cls.model_validate_json(raw)

    @property
    def partition_key(self) -> bytes:
        """The Kafka key: records of one key stay in order on one partition."""
        raise NotImplementedError


class EventType(StrEnum):
    PAGE = "page"
    TRACK = "track"
    IDENTIFY = "identify"
    ALIAS = "alias"


class PageContext(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str | None = Field(default=None, max_length=2048)
    path: str | None = Field(default=None, max_length=2048)
    referrer: str | None = Field(default=None, max_length=2048)
    title: str | None = Field(default=None, max_length=1024)
    search: str | None = Field(default=None, max_length=2048)


class CampaignContext(BaseModel):
    """UTM parameters, named as Segment and GA name them (utm_campaign is `name`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str | None = Field(default=None, max_length=256)
    medium: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    term: str | None = Field(default=None, max_length=256)
    content: str | None = Field(default=None, max_length=256)


class EventContext(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    page: PageContext = PageContext()
    campaign: CampaignContext = CampaignContext()
    user_agent: str | None = Field(default=None, max_length=1024)
    locale: str | None = Field(default=None, max_length=64)
    library: str | None = Field(default=None, max_length=128)


class Event(KafkaRecord):
    """One enriched event. Timestamps are timezone-aware UTC; `timestamp` is the event time."""

    schema_version: Literal[1] = 1
    event_id: str
    site_id: str
    type: EventType
    event: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    previous_id: str | None = None
    timestamp: UtcDatetime
    original_timestamp: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None
    received_at: UtcDatetime
    channel: str = Field(default="direct", description="Default channel group of the visit.")
    device: str = Field(default="unknown", description="desktop, mobile, tablet, bot, unknown")
    browser: str = Field(default="unknown", description="Browser family from the user agent.")
    is_bot: bool = Field(default=False, description="A bot or headless browser: kept, flagged.")
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: EventContext = EventContext()

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

    def to_bytes(self) -> bytes:
        # Most fields of most events are empty; leaving the None ones out nearly halves the
        # record. (Leaving out every default saves 5% more bytes but doubles the cost: pydantic
        # then compares each nested model with its default.)
        return self.model_dump_json(exclude_none=True).encode()


# No event happens before this: the collector refuses earlier ones and the sessionizer routes
# any that reach it to the dead letters. No shop tracked anyone then, and event-time arithmetic
# (a watermark minutes before the newest event) needs room before it.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def correct_clock_skew(
    client_timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """The event time on the server's clock.

    A client's clock can be off by hours; the offset between when it says it sent a request and
    when the server received it measures that error, and the same error applies to when the event
    happened: `timestamp + (received_at - sent_at)`. Network delay is counted as skew, which keeps
    the corrected time at or before `received_at` for an honest client.
    """
    if client_timestamp is None:
        return received_at
    if sent_at is None:
        return client_timestamp
    return client_timestamp + (received_at - sent_at)


DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024


class DeadLetterReason(StrEnum):
    SCHEMA_VIOLATION = "schema_violation"
    SIZE_VIOLATION = "size_violation"
    UNDECODABLE = "undecodable"
    LATE_EVENT = "late_event"


class DeadLetter(KafkaRecord):
    """Input that was refused, kept with the reason so nothing vanishes without a trace."""

    schema_version: Literal[1] = 1
    site_id: str | None
    reason: DeadLetterReason
    message: str
    payload: str = Field(description="The refused input, cut to the first 64 KiB.")
    stage: Literal["ingest", "sessionizer", "metrics"]
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
        stage: Literal["ingest", "sessionizer", "metrics"],
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
