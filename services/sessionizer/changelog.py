"""The stages' state as changelog rows, version 1: compact JSON-ready lists, one per key.

These rows are the values on the sessionizer's compacted changelog topics (`*-changelog.v1`),
in the embedded mode's state file and in a journey handed off between partitions. A change to
any row's layout is a new version (new changelog topics, so a restore never reads rows of
another layout), except fields appended at a row's end that a shorter row reads as absent.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from contracts.phases import PhaseModel
from contracts.timecodec import from_micros, maybe_micros, to_micros
from services.sessionizer.model import IdentityState, JourneyState, SessionState

# A device's identity: [customer or null, its recent event-id hashes in base64].
IDENTITY_ROW_V1 = ("customer", "recent")


def identity_row(state: IdentityState) -> list[Any]:
    return [state.customer, base64.b64encode(state.recent).decode()]


def identity_from_row(row: list[Any]) -> IdentityState:
    return IdentityState(row[0], base64.b64decode(row[1]))


# A journey: these 23 fields, in this order; a row of the first 21 has no numbers.
JOURNEY_ROW_V1 = (
    "first_seen", "first_channel", "first_touchpoint", "phase", "phase_since", "furthest",
    "last_event_at", "orders", "flags", "cart_since", "session_id", "session_started_at",
    "session_last_event_at", "session_events", "session_page_views", "session_conversions",
    "session_channel", "session_landing_path", "session_exit_path", "session_anonymous_id",
    "session_user_id", "number", "session_number",
)  # fmt: skip


def journey_row(j: JourneyState, model: PhaseModel) -> list[Any]:
    """A journey as a compact changelog row; the key holds site and journey id.

    State is kept per visitor, so bytes count: times are microseconds after the journey's first
    event (exact, so a restored journey computes the same deadlines), phases are positions in
    the model, the session id is 22 base64 characters, and values equal to one already stored
    are left out (the session's channel when it is the first visit's; 0 for an anonymous id
    that is the journey id).
    """
    s = j.session
    t0 = to_micros(j.first_seen)

    def rel(value: datetime | None) -> int | None:
        micros = maybe_micros(value)
        return None if micros is None else micros - t0

    return [
        t0, j.first_channel, j.first_touchpoint, model.index(j.phase), rel(j.phase_since),
        model.index(j.furthest), rel(j.last_event_at), j.orders,
        int(j.dropped) | int(s.engaged) << 1 | int(s.closed) << 2, rel(j.cart_since),
        base64.urlsafe_b64encode(uuid.UUID(s.id).bytes).decode().rstrip("="),
        rel(s.started_at), rel(s.last_event_at), s.events, s.page_views, s.conversions,
        None if s.channel == j.first_channel else s.channel, s.landing_path,
        None if s.exit_path == s.landing_path else s.exit_path,
        0 if s.anonymous_id == j.journey_id else s.anonymous_id, s.user_id, j.number, s.number,
    ]  # fmt: skip


def journey_from_row(key: tuple[str, str], row: list[Any], model: PhaseModel) -> JourneyState:
    (t0, first_channel, first_touchpoint, phase, phase_since, furthest, last_event_at, orders,
     flags, cart_since, session_id, started_at, session_last, events, page_views, conversions,
     channel, landing_path, exit_path, anonymous_id, user_id) = row[:21]  # fmt: skip
    number, session_number = (row[21:] + [None, None])[:2]

    def at(offset: int) -> datetime:
        return from_micros(t0 + offset)

    session = SessionState(
        id=str(uuid.UUID(bytes=base64.urlsafe_b64decode(session_id + "=="))),
        started_at=at(started_at), last_event_at=at(session_last), events=events,
        page_views=page_views, conversions=conversions, channel=channel or first_channel,
        landing_path=landing_path, exit_path=exit_path or landing_path, engaged=bool(flags & 2),
        closed=bool(flags & 4), anonymous_id=key[1] if anonymous_id == 0 else anonymous_id,
        user_id=user_id, number=session_number,
    )  # fmt: skip
    return JourneyState(
        site_id=key[0], journey_id=key[1], first_seen=from_micros(t0), first_channel=first_channel,
        first_touchpoint=first_touchpoint, phase=model.phases[phase],
        phase_since=at(phase_since), furthest=model.phases[furthest],
        last_event_at=at(last_event_at), session=session, orders=orders, dropped=bool(flags & 1),
        cart_since=None if cart_since is None else at(cart_since), number=number,
    )  # fmt: skip
