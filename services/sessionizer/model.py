"""The stages' state per key: plain data, which the changelog rows encode (`changelog`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class IdentityState:
    """Per device key: the customer it belongs to (if known) and its recent event ids."""

    customer: str | None = None
    recent: bytes = b""  # the last DEDUP_WINDOW event-id hashes, 4 bytes each


@dataclass(slots=True)
class SessionState:
    id: str
    started_at: datetime
    last_event_at: datetime
    events: int = 0
    page_views: int = 0
    conversions: int = 0
    channel: str = "direct"
    landing_path: str | None = None
    exit_path: str | None = None
    engaged: bool = False
    closed: bool = False
    anonymous_id: str | None = None
    user_id: str | None = None
    number: int | None = None  # contracts.journeys.journey_number


@dataclass(slots=True)
class JourneyState:
    site_id: str
    journey_id: str
    first_seen: datetime
    first_channel: str
    first_touchpoint: str
    phase: str
    phase_since: datetime
    furthest: str
    last_event_at: datetime
    session: SessionState
    orders: int = 0
    dropped: bool = False
    cart_since: datetime | None = None
    number: int | None = None  # contracts.journeys.journey_number
