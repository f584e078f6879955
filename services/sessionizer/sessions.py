"""Sessions: a journey's visits, cut by inactivity and a longest length (GA4's rules), and
their snapshots. Pure."""

from __future__ import annotations

from contracts.events import Event, EventType
from contracts.journeys import SessionSnapshot, derived_id
from services.sessionizer.model import SessionState
from services.sessionizer.rules import JourneyRules

SNAPSHOT_EVERY = 10  # events between session snapshots of an open session
ENGAGED_SECONDS = 10.0
ENGAGED_PAGE_VIEWS = 2


def new_session(event: Event, journey_id: str, number: int | None = None) -> SessionState:
    return SessionState(
        id=derived_id(event.site_id, journey_id, event.event_id),
        started_at=event.timestamp,
        last_event_at=event.timestamp,
        channel=event.channel,
        number=number,
    )


def ends_before(session: SessionState, event: Event, rules: JourneyRules) -> bool:
    """Whether `event` starts a new session: this one is closed, quiet for longer than the
    timeout, or would grow longer than the longest session."""
    return (
        session.closed
        or event.timestamp - session.last_event_at > rules.session_timeout
        or event.timestamp - session.started_at > rules.max_session
    )


def count_event(session: SessionState, event: Event, is_order: bool) -> bool:
    """Count `event` into its session; True when the session's snapshot is due (its first
    event, a change of engagement, or every SNAPSHOT_EVERY events)."""
    was_engaged = session.engaged
    session.events += 1
    # An out-of-order event joins the session without moving its end backwards.
    session.last_event_at = max(session.last_event_at, event.timestamp)
    session.started_at = min(session.started_at, event.timestamp)
    session.anonymous_id = event.anonymous_id or session.anonymous_id
    session.user_id = event.user_id or session.user_id
    if event.type is EventType.PAGE:
        session.page_views += 1
        path = event.context.page.path
        session.landing_path = session.landing_path or path
        session.exit_path = path or session.exit_path
    if is_order:
        session.conversions += 1
    session.engaged = (
        session.page_views >= ENGAGED_PAGE_VIEWS
        or session.conversions > 0
        or (session.last_event_at - session.started_at).total_seconds() >= ENGAGED_SECONDS
    )
    return (
        session.events == 1
        or session.engaged != was_engaged
        or session.events % SNAPSHOT_EVERY == 0
    )


def snapshot(
    site_id: str, journey_id: str, session: SessionState, journey_number: int | None = None
) -> SessionSnapshot:
    return SessionSnapshot(
        session_id=session.id,
        site_id=site_id,
        journey_id=journey_id,
        anonymous_id=session.anonymous_id,
        user_id=session.user_id,
        started_at=session.started_at,
        last_event_at=session.last_event_at,
        event_count=session.events,
        page_views=session.page_views,
        conversions=session.conversions,
        engaged=session.engaged,
        closed=session.closed,
        channel=session.channel,
        landing_path=session.landing_path,
        exit_path=session.exit_path,
        version=2 * session.events + int(session.closed),
        journey_number=journey_number,
        session_number=session.number,
    )
