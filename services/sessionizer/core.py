"""Sessions and journey phases from a stream of events: pure logic, no I/O.

The Kafka worker and the embedded pipeline both feed events in per-visitor order and forward what
comes out. Everything here is deterministic: the same events in the same order give the same
outputs with the same ids, which is what makes replays after a crash harmless downstream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from klantreis.events import Event, EventType
from klantreis.journeys import PhaseTransition, SessionSnapshot, derived_id
from klantreis.phases import PhaseModel

SessionizerOutput = SessionSnapshot | PhaseTransition


@dataclass
class JourneyState:
    """What the sessionizer remembers of one visitor between events."""

    site_id: str
    journey_id: str
    anonymous_id: str | None
    user_id: str | None
    session_id: str
    session_started_at: datetime
    last_event_at: datetime
    session_events: int
    session_page_views: int
    landing_url: str | None
    exit_url: str | None
    phase: str
    furthest_phase: str
    orders: int


class Sessionizer:
    """Turns one partition's events into session snapshots and phase transitions.

    A session ends after `session_timeout` without events (in event time, so a replay splits
    sessions exactly as the live run did). It is not split at midnight or on a campaign change.
    """

    def __init__(self, model: PhaseModel, session_timeout: timedelta) -> None:
        self._model = model
        self._timeout = session_timeout
        self._journeys: dict[tuple[str, str], JourneyState] = {}

    @property
    def active_journeys(self) -> int:
        return len(self._journeys)

    def export_state(self) -> list[dict[str, Any]]:
        """Every journey's state as plain data, for a snapshot that `restore_state` reads back."""
        return [asdict(state) for state in self._journeys.values()]

    def restore_state(self, states: list[dict[str, Any]]) -> None:
        for raw in states:
            state = JourneyState(**raw)
            for name in ("session_started_at", "last_event_at"):
                value = getattr(state, name)
                if isinstance(value, str):
                    setattr(state, name, datetime.fromisoformat(value))
            self._journeys[(state.site_id, state.journey_id)] = state

    def process(self, event: Event) -> list[SessionizerOutput]:
        key = (event.site_id, event.visitor_id)
        state = self._journeys.get(key)
        outputs: list[SessionizerOutput] = []
        if state is None:
            state = self._begin_journey(event)
            self._journeys[key] = state
            outputs.append(self._transition(state, event, from_phase=None))
        else:
            if event.timestamp - state.last_event_at > self._timeout:
                self._begin_session(state, event)
            self._record_event(state, event)
            moved_from = self._apply_phase(state, event)
            if moved_from is not None:
                outputs.append(self._transition(state, event, from_phase=moved_from))
        outputs.insert(0, self._snapshot(state))
        return outputs

    def _begin_journey(self, event: Event) -> JourneyState:
        phase = self._target_phase(event, orders_before=0) or self._model.phases[0]
        state = JourneyState(
            site_id=event.site_id,
            journey_id=event.visitor_id,
            anonymous_id=event.anonymous_id,
            user_id=event.user_id,
            session_id="",
            session_started_at=event.timestamp,
            last_event_at=event.timestamp,
            session_events=0,
            session_page_views=0,
            landing_url=None,
            exit_url=None,
            phase=phase,
            furthest_phase=phase,
            orders=0,
        )
        self._begin_session(state, event)
        self._record_event(state, event)
        return state

    def _begin_session(self, state: JourneyState, event: Event) -> None:
        state.session_id = derived_id(state.site_id, state.journey_id, event.event_id)
        state.session_started_at = event.timestamp
        state.last_event_at = event.timestamp
        state.session_events = 0
        state.session_page_views = 0
        state.landing_url = None
        state.exit_url = None

    def _record_event(self, state: JourneyState, event: Event) -> None:
        state.session_events += 1
        # An out-of-order event belongs to the session but does not move its end backwards.
        state.last_event_at = max(state.last_event_at, event.timestamp)
        if event.user_id:
            state.user_id = event.user_id
        if event.type is EventType.PAGE:
            state.session_page_views += 1
            url = event.context.page.url
            if state.landing_url is None:
                state.landing_url = url
            state.exit_url = url
        if self._model.is_purchase(event):
            state.orders += 1

    def _target_phase(self, event: Event, orders_before: int) -> str | None:
        if (
            self._model.is_purchase(event)
            and orders_before >= 1
            and self._model.repeat_purchase_phase
        ):
            return self._model.repeat_purchase_phase
        return self._model.phase_of(event)

    def _apply_phase(self, state: JourneyState, event: Event) -> str | None:
        """Move the journey if the event says so; return the phase it left, or None."""
        orders_before = state.orders - (1 if self._model.is_purchase(event) else 0)
        target = self._target_phase(event, orders_before)
        if target is None or target == state.phase:
            return None
        left = state.phase
        state.phase = target
        if self._model.index(target) > self._model.index(state.furthest_phase):
            state.furthest_phase = target
        return left

    def _transition(
        self, state: JourneyState, event: Event, from_phase: str | None
    ) -> PhaseTransition:
        return PhaseTransition(
            transition_id=derived_id(state.site_id, state.journey_id, event.event_id, state.phase),
            site_id=state.site_id,
            journey_id=state.journey_id,
            session_id=state.session_id,
            from_phase=from_phase,
            to_phase=state.phase,
            furthest_phase=state.furthest_phase,
            at=event.timestamp,
            event_id=event.event_id,
            event_name=event.event,
        )

    def _snapshot(self, state: JourneyState) -> SessionSnapshot:
        return SessionSnapshot(
            session_id=state.session_id,
            site_id=state.site_id,
            journey_id=state.journey_id,
            anonymous_id=state.anonymous_id,
            user_id=state.user_id,
            started_at=state.session_started_at,
            last_event_at=state.last_event_at,
            event_count=state.session_events,
            page_views=state.session_page_views,
            landing_url=state.landing_url,
            exit_url=state.exit_url,
            version=state.session_events,
        )
