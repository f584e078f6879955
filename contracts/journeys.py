"""What the sessionizer emits: sessions, phase transitions, signals and identity links.

Every record carries an id derived from its input, so a replay after a crash produces the same
records again and the warehouse collapses them instead of counting twice.
"""

from __future__ import annotations

import hashlib
import uuid
from enum import StrEnum
from typing import Any

import msgspec

from contracts.events import KafkaRecord, UtcDatetime

# Fixed namespace: ids derived from it are stable across processes, versions and replays.
KLANTREIS_NAMESPACE = uuid.UUID("5b0c1a52-3f0e-4a57-9d0c-6b6c616e7472")


_NAMESPACE_BYTES = KLANTREIS_NAMESPACE.bytes


def derived_id(*parts: str) -> str:
    """uuid5(KLANTREIS_NAMESPACE, parts joined): computed directly, as the sessionizer makes
    several per event and building UUID objects costs more than the hash."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# A journey or session number is its sessionizer partition in the high 32 bits and that
# partition's serial of journeys (or of sessions) in the low 32: unique among journeys (or
# sessions) without coordination, and dense within a partition, which is what makes a bitmap of
# them small and fast to merge. Journeys and sessions are counted in bitmaps of their own, so a
# journey and a session may share a number.
SERIAL_BITS = 32


def journey_number(partition: int, serial: int) -> int:
    return partition << SERIAL_BITS | serial


def legacy_number(record_id: str) -> int:
    """The number of a journey or session already under way before numbering: the one its
    warehouse rows of then (number 0) are counted by, `journey_bitmap_id` and `session_bitmap_id`
    in migration 0015, so it still counts once. High 16 bits set: apart from every partition."""
    low = int.from_bytes(hashlib.md5(record_id.encode()).digest()[:8], "little")
    return 0xFFFF000000000000 | low % 0x1000000000000


def journey_key(site_id: str, journey_id: str) -> bytes:
    """Outputs are keyed by journey, so all of one journey's records share a partition."""
    return f"{site_id}/{journey_id}".encode()


class JourneyRecord(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    site_id: str
    journey_id: str

    @property
    def partition_key(self) -> bytes:
        return journey_key(self.site_id, self.journey_id)


class SessionSnapshot(JourneyRecord, frozen=True, kw_only=True):
    """A session as it stands; a later `version` of the same `session_id` replaces it.

    Emitted when a session starts, when it becomes engaged, every few events, and when it
    closes (`closed`), so the warehouse always holds a recent picture without a record per event.
    """

    session_id: str
    anonymous_id: str | None
    user_id: str | None
    started_at: UtcDatetime
    last_event_at: UtcDatetime
    event_count: int
    page_views: int
    conversions: int
    engaged: bool
    closed: bool
    channel: str
    landing_path: str | None
    exit_path: str | None
    version: int
    # Dense numbers the sessionizer gives each journey and session (`journey_number`), so the
    # warehouse counts them exactly in bitmaps; None in records made before numbering.
    journey_number: int | None = None
    session_number: int | None = None


class TransitionKind(StrEnum):
    ENTERED = "entered"  # the journey's first event
    ADVANCED = "advanced"  # to a later phase
    FELL_BACK = "fell_back"  # to an earlier phase (journeys are not linear)
    DROPPED_OFF = "dropped_off"  # quiet for the phase's drop-off time
    RETURNED = "returned"  # active again after dropping off
    MERGED = "merged"  # another identity's history joined this journey


class PhaseTransition(JourneyRecord, frozen=True, kw_only=True):
    """A journey changed phase or state; `from_phase` is None when it began."""

    transition_id: str
    session_id: str
    kind: TransitionKind
    from_phase: str | None
    to_phase: str
    furthest_phase: str
    at: UtcDatetime
    seconds_in_previous_phase: float | None
    event_id: str | None
    event_name: str | None
    channel: str | None
    touchpoint: str | None
    device: str | None = None  # of the event that moved the journey; None for timers
    segment: str | None = None  # `new` in the journey's first session, else `returning`
    journey_number: int | None = None  # as on SessionSnapshot


class SignalKind(StrEnum):
    CART_ABANDONED = "cart_abandoned"
    DROPPED_OFF = "dropped_off"
    RETURNED = "returned"
    REPEAT_PURCHASE = "repeat_purchase"
    PHASE_REACHED = "phase_reached"  # the journey got further than ever before


class Signal(JourneyRecord, frozen=True, kw_only=True):
    """A journey change worth acting on now (an e-mail, an ad audience, a chat prompt)."""

    signal_id: str
    kind: SignalKind
    phase: str
    at: UtcDatetime
    event_id: str | None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class LinkKind(StrEnum):
    LINKED = "linked"  # an anonymous id logged in: its history joins the customer's journey
    RELINKED = "relinked"  # a device already linked logged in as someone else: only later events
    ALIASED = "aliased"  # an explicit alias merged one id into another


class IdentityLink(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    """`previous_id` (an anonymous or former id) belongs to `customer_id` from `at` on."""

    link_id: str
    site_id: str
    previous_id: str
    customer_id: str
    kind: LinkKind
    at: UtcDatetime
    event_id: str

    @property
    def partition_key(self) -> bytes:
        return journey_key(self.site_id, self.customer_id)
