"""Stage 2: journeys, keyed by customer once known: sessions, non-linear phases, merges of
claimed history, event-time timers and signals. Pure.

Time is event time (`clock`): the partition's watermark is the newest event time seen minus
the allowed lateness, and timers fire when it passes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.events import EARLIEST_EVENT_TIME, DeadLetter, DeadLetterReason, Event
from contracts.journeys import (
    PhaseTransition,
    SessionSnapshot,
    Signal,
    SignalKind,
    TransitionKind,
    derived_id,
    journey_number,
    legacy_number,
)
from contracts.records import SessionizerOutput
from services.sessionizer.changelog import journey_from_row, journey_row
from services.sessionizer.clock import EventClock
from services.sessionizer.model import JourneyState
from services.sessionizer.rules import JourneyRules
from services.sessionizer.sessions import (
    count_event,
    ends_before,
    new_session,
    snapshot,
)
from services.sessionizer.store import TrackedState
from services.sessionizer.timers import Timer, TimerKind, TimerQueue

# Channels that say nothing about how the customer came: a click inside the shop, or an event a
# shop's server sent. A transition on such an event is credited to the visit's channel.
_NO_NEW_CHANNEL = frozenset({"internal", "direct"})


def _moving_channel(event_channel: str, session_channel: str) -> str:
    return session_channel if event_channel in _NO_NEW_CHANNEL else event_channel


# Which serial a number comes from (`JourneyTracker.serials`).
JOURNEY, SESSION = 0, 1


class JourneyTracker:
    """Sessions, phases, timers and signals for the journeys of one partition.

    Time is event time. The partition's watermark is the newest event time seen minus the
    allowed lateness; timers (session end, drop-off, abandoned cart) fire when it passes them.
    An event older than its journey's newest event by more than the allowed lateness cannot be
    placed in a closed session: it is routed out as a late event, not folded in.
    """

    def __init__(self, rules: JourneyRules, partition: int = 0) -> None:
        self._rules = rules
        self._partition = partition
        # The last serials given to a journey and to a session here, apart so that each kind's
        # numbers are as dense as can be (smaller bitmaps); in the changelog when they moved.
        self.serials = [0, 0]
        self.serials_moved = False
        self._model = rules.model
        self.journeys: TrackedState[tuple[str, str], JourneyState] = TrackedState()
        self._timers = TimerQueue()
        self.clock = EventClock(rules.allowed_lateness)
        self.late_events = 0
        # Journeys whose next events wait for another partition's hand-off: their timers wait
        # with them (see routing.JourneyStage).
        self.held: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.journeys)

    @property
    def open_sessions(self) -> int:
        return sum(not j.session.closed for j in self.journeys.values())

    @property
    def watermark(self) -> datetime | None:
        return self.clock.watermark

    def journey(self, site_id: str, journey_id: str) -> JourneyState | None:
        return self.journeys.get((site_id, journey_id))

    def _next_number(self, kind: int = JOURNEY) -> int:
        self.serials[kind] += 1
        self.serials_moved = True
        return journey_number(self._partition, self.serials[kind])

    @staticmethod
    def _numbered(journey: JourneyState) -> int:
        """The journey's number; one restored from a row made before numbering takes the number
        its warehouse rows of then are counted by (`legacy_number`), and so does its session."""
        if journey.number is None:
            journey.number = legacy_number(journey.journey_id)
        if journey.session.number is None:
            journey.session.number = legacy_number(journey.session.id)
        return journey.number

    # --- events -------------------------------------------------------------------------------

    def process(self, event: Event, journey_id: str) -> list[SessionizerOutput]:
        """One event of the partition's stream: the journey's outputs, then the timers of any
        journey that the event's time moved the watermark past."""
        outputs = self.apply(event, journey_id, self.watermark)
        return outputs + self._advance(event.timestamp)

    def apply(
        self, event: Event, journey_id: str, watermark: datetime | None
    ) -> list[SessionizerOutput]:
        """One event of one journey, given the watermark its stream had reached before it: the
        journey's timers due by then (or before the event) fire first, as they would have had
        the journey's stream been the only one; it is late only if it is late in that stream."""
        outputs: list[SessionizerOutput] = []
        key = (event.site_id, journey_id)
        journey = self.journeys.get(key)
        late_in_stream = watermark is not None and event.timestamp < watermark
        if journey is None and late_in_stream:
            # A new journey behind its stream's clock: the timers of its first session would
            # fire before its next event could join it (history sent after live traffic).
            assert watermark is not None
            newest = watermark + self._rules.allowed_lateness
            return [self._late(event, newest, "than the newest event of its stream")]
        if journey is None:
            journey = self._begin(event, journey_id, outputs)
        elif (
            event.timestamp < journey.last_event_at - self._rules.allowed_lateness
            and late_in_stream
        ):
            # Late for its journey and for its own stream. (An event older than its journey's
            # newest but on time in its own stream came from another device of the customer,
            # whose partition ran behind: it joins the journey. In one stream the first rule
            # implies the second.)
            return [self._late(event, journey.last_event_at, "than the journey's newest event")]
        else:
            self.journeys.for_update(key)
            outputs.extend(self._fire_due(journey, event.timestamp, watermark))
            self._continue(journey, event, outputs)
        self._schedule(journey)
        return outputs

    def _late(self, event: Event, newest: datetime, than: str) -> DeadLetter:
        self.late_events += 1
        return DeadLetter.of(
            event.to_bytes(),
            DeadLetterReason.LATE_EVENT,
            f"{(newest - event.timestamp).total_seconds():.0f}s older {than}; allowed "
            f"lateness is {self._rules.allowed_lateness.total_seconds():.0f}s",
            "sessionizer",
            event.site_id,
            received_at=event.received_at,  # not the clock: a replay must be identical
        )

    def _begin(
        self, event: Event, journey_id: str, outputs: list[SessionizerOutput]
    ) -> JourneyState:
        phase = self._target_phase(event, orders_before=0) or self._model.phases[0]
        journey = JourneyState(
            site_id=event.site_id,
            journey_id=journey_id,
            first_seen=event.timestamp,
            first_channel=event.channel,
            first_touchpoint=self._model.touchpoint_of(event),
            phase=phase,
            phase_since=event.timestamp,
            furthest=phase,
            last_event_at=event.timestamp,
            number=self._next_number(),
            session=new_session(event, journey_id),
        )
        journey.session.number = self._next_number(SESSION)
        self.journeys.put((event.site_id, journey_id), journey)
        self._record(journey, event, outputs, behind=False)
        outputs.append(self._transition(journey, event, TransitionKind.ENTERED, None, None))
        outputs.append(self._signal(journey, SignalKind.PHASE_REACHED, event.timestamp, event))
        return journey

    def _continue(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput]
    ) -> None:
        # Older than the journey's newest event: one that came after the hold (`reorder`) had
        # let newer ones go, or one of another device. It counts, but the current phase stays
        # that of the newest event: it can only take the journey further.
        older = event.timestamp < journey.last_event_at
        # Only possible for an event of another device of the customer whose partition ran
        # behind (in one stream such an event is late): it is no longer what the customer is
        # doing now, so it fills no cart either.
        behind = event.timestamp < journey.last_event_at - self._rules.allowed_lateness
        if ends_before(journey.session, event, self._rules):
            if not journey.session.closed:
                outputs.append(self._close(journey))
            journey.session = new_session(event, journey.journey_id, self._next_number(SESSION))
        if journey.dropped:
            journey.dropped = False
            outputs.append(
                self._transition(journey, event, TransitionKind.RETURNED, journey.phase, None)
            )
            outputs.append(self._signal(journey, SignalKind.RETURNED, event.timestamp, event))
        self._record(journey, event, outputs, behind)
        self._move(journey, event, outputs, older)

    def _record(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput], behind: bool
    ) -> None:
        is_order = self._model.is_order(event)
        snapshot_due = count_event(journey.session, event, is_order)
        journey.last_event_at = max(journey.last_event_at, event.timestamp)
        if is_order:
            journey.orders += 1
            journey.cart_since = None
        elif self._model.is_cart_add(event) and not behind:  # the order may have come since
            journey.cart_since = event.timestamp
        if snapshot_due:
            outputs.append(self._snapshot(journey))

    def _target_phase(self, event: Event, orders_before: int) -> str | None:
        repeat = self._model.repeat_purchase_phase
        if repeat and self._model.is_order(event) and orders_before >= 1:
            return repeat
        return self._model.phase_of(event)

    def _move(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput], older: bool
    ) -> None:
        orders_before = journey.orders - (1 if self._model.is_order(event) else 0)
        if self._model.is_order(event) and orders_before == 1:
            outputs.append(
                self._signal(journey, SignalKind.REPEAT_PURCHASE, event.timestamp, event)
            )
        target = self._target_phase(event, orders_before)
        if target is None or target == journey.phase:
            return
        index = self._model.index
        if older and index(target) <= index(journey.furthest):
            return  # an earlier step that came late: it moves the journey only further
        kind = (
            TransitionKind.ADVANCED
            if index(target) > index(journey.phase)
            else (TransitionKind.FELL_BACK)
        )
        left, spent = journey.phase, (event.timestamp - journey.phase_since).total_seconds()
        journey.phase, journey.phase_since = target, event.timestamp
        further = index(target) > index(journey.furthest)
        if further:
            journey.furthest = target
        outputs.append(self._transition(journey, event, kind, left, spent))
        if further:
            outputs.append(self._signal(journey, SignalKind.PHASE_REACHED, event.timestamp, event))

    # --- identities -----------------------------------------------------------------------------

    def merge(self, site_id: str, from_journey: str, into_journey: str) -> list[SessionizerOutput]:
        """The history of `from_journey` now belongs to `into_journey` (a login or an alias).

        If the customer has no journey here yet, the anonymous journey simply becomes theirs,
        session and all, so logging in does not split a session. Otherwise the two combine:
        the earliest first touch, the furthest phase, the phase of the most recent activity.
        """
        if from_journey == into_journey:
            return []
        source = self.journeys.pop((site_id, from_journey))
        if source is None:
            return []
        return self._absorb(source, into_journey)

    def hand_off(
        self, site_id: str, journey_id: str, watermark: datetime | None
    ) -> tuple[list[SessionizerOutput], list[Any] | None]:
        """Let a journey go to the partition of the customer it now belongs to: the timers due
        by `watermark` fire here first, under its old id, as they would have before the login
        in one stream. Returns those outputs and the journey as a row (None: no such journey)."""
        outputs = self.catch_up(site_id, journey_id, watermark)
        journey = self.journeys.pop((site_id, journey_id))
        if journey is None:
            return [], None
        return outputs, journey_row(journey, self._model)

    def catch_up(
        self, site_id: str, journey_id: str, watermark: datetime | None
    ) -> list[SessionizerOutput]:
        """Fire the journey's timers due by `watermark`, as one stream would have by now."""
        journey = self.journeys.get((site_id, journey_id))
        if journey is None or watermark is None:
            return []
        outputs = self._fire_due(journey, EARLIEST_EVENT_TIME, watermark)
        if outputs:
            self._schedule(journey)
        return outputs

    def take_over(
        self, site_id: str, from_journey: str, into_journey: str, row: list[Any]
    ) -> list[SessionizerOutput]:
        """`merge` for a journey handed off by another partition (`hand_off`)."""
        return self._absorb(
            journey_from_row((site_id, from_journey), row, self._model), into_journey
        )

    def _absorb(self, source: JourneyState, into_journey: str) -> list[SessionizerOutput]:
        site_id, from_journey = source.site_id, source.journey_id
        target = self.journeys.for_update((site_id, into_journey))
        if target is None:
            # The warehouse counts a journey id once: under its new id the journey is another
            # journey there, so it takes another number (its session keeps id and number).
            source.journey_id = into_journey
            source.number = self._next_number()
            self.journeys.put((site_id, into_journey), source)
            self._schedule(source)
            return []
        outputs: list[SessionizerOutput] = []
        before = (target.furthest, target.first_seen)
        if source.first_seen < target.first_seen:
            target.first_seen = source.first_seen
            target.first_channel = source.first_channel
            target.first_touchpoint = source.first_touchpoint
        index = self._model.index
        if index(source.furthest) > index(target.furthest):
            target.furthest = source.furthest
        if source.last_event_at > target.last_event_at:
            target.phase, target.phase_since = source.phase, source.phase_since
            target.last_event_at = source.last_event_at
            target.session, displaced = source.session, target.session
        else:
            displaced = source.session
        if not displaced.closed:
            # One journey has one current session; the other one ends here.
            kept, target.session = target.session, displaced
            outputs.append(self._close(target))
            target.session = kept
        target.orders += source.orders
        target.dropped = target.dropped and source.dropped
        if source.cart_since and (not target.cart_since or source.cart_since > target.cart_since):
            target.cart_since = source.cart_since
        self._schedule(target)
        if (target.furthest, target.first_seen) == before:
            return outputs
        return outputs + [
            PhaseTransition(
                transition_id=derived_id(site_id, into_journey, "merged", from_journey),
                site_id=site_id,
                journey_id=into_journey,
                session_id=target.session.id,
                kind=TransitionKind.MERGED,
                from_phase=target.phase,
                to_phase=target.phase,
                furthest_phase=target.furthest,
                at=max(source.last_event_at, target.last_event_at),
                seconds_in_previous_phase=None,
                event_id=None,
                event_name=None,
                channel=target.first_channel,
                touchpoint=target.first_touchpoint,
                journey_number=self._numbered(target),
            )
        ]

    # --- timers ---------------------------------------------------------------------------------

    def _deadlines(self, journey: JourneyState) -> list[tuple[datetime, TimerKind]]:
        deadlines = []
        if not journey.session.closed:
            deadlines.append(
                (
                    journey.session.last_event_at + self._rules.session_timeout,
                    TimerKind.SESSION_ENDED,
                )
            )
        dropoff = self._model.dropoff.get(journey.phase)
        if dropoff is not None and not journey.dropped:
            deadlines.append((journey.last_event_at + dropoff, TimerKind.DROPPED_OFF))
        abandon = self._model.cart_abandon_after
        if abandon is not None and journey.cart_since is not None:
            deadlines.append((journey.cart_since + abandon, TimerKind.CART_ABANDONED))
        return deadlines

    def _next_timer(self, journey: JourneyState) -> Timer | None:
        deadlines = self._deadlines(journey)
        if not deadlines:
            return None
        deadline, kind = min(deadlines)
        return Timer(deadline, journey.site_id, journey.journey_id, kind)

    def _schedule(self, journey: JourneyState) -> None:
        """Queue the journey's earliest deadline (see `timers`)."""
        timer = self._next_timer(journey)
        if timer is not None:
            self._timers.push(timer)
        if len(self._timers) > 4 * len(self.journeys) + 1024:
            self._rebuild_timers()

    def _rebuild_timers(self) -> None:
        self._timers.rebuild(self._next_timer(journey) for journey in self.journeys.values())

    def _fire_due(
        self, journey: JourneyState, before: datetime, watermark: datetime | None
    ) -> list[SessionizerOutput]:
        """The journey's timers due before its next event (at `before`) or by `watermark`, in
        deadline order.

        Had the watermark passed them before this event came, they would have fired then; they
        fire here all the same, so whether a returning customer first dropped off does not depend
        on how the partition's other visitors happened to move its watermark.
        """
        outputs: list[SessionizerOutput] = []
        while (timer := self._next_timer(journey)) is not None and (
            timer.deadline < before or (watermark is not None and timer.deadline <= watermark)
        ):
            outputs.extend(self._fire(journey, timer))
        return outputs

    def pass_time(self, now: datetime) -> list[SessionizerOutput]:
        """No event came until `now` (the wall clock, in a live stream with nothing left to
        read): the stream's clock moves there as an event's would, and what falls due fires.
        A stream that has never had an event has no clock to move: its first events may be
        history replayed into a new pipeline, which a clock at `now` would find late."""
        if self.clock.newest is None or now <= self.clock.newest:
            return []
        return self._advance(now)

    def _advance(self, event_time: datetime) -> list[SessionizerOutput]:
        self.clock.observe(event_time)
        watermark = self.watermark
        assert watermark is not None
        return self.fire_until(watermark)

    def fire_until(self, watermark: datetime) -> list[SessionizerOutput]:
        """Fire every timer due by `watermark`, except those of the journeys in `held`."""
        outputs: list[SessionizerOutput] = []
        while (timer := self._timers.pop_due(watermark, self._is_current)) is not None:
            journey = self.journeys.get((timer.site_id, timer.journey_id))
            assert journey is not None
            outputs.extend(self._fire(journey, timer))
            self._schedule(journey)
        return outputs

    def _is_current(self, timer: Timer) -> bool:
        """Not stale (the journey moved on or merged away), nor held (rescheduled on release)."""
        key = (timer.site_id, timer.journey_id)
        journey = self.journeys.get(key)
        return journey is not None and key not in self.held and self._next_timer(journey) == timer

    def reschedule(self, site_id: str, journey_id: str) -> None:
        """Queue a journey's next timer again, after it left `held`."""
        journey = self.journeys.get((site_id, journey_id))
        if journey is not None:
            self._schedule(journey)

    def _fire(self, journey: JourneyState, timer: Timer) -> list[SessionizerOutput]:
        self.journeys.for_update((journey.site_id, journey.journey_id))
        if timer.kind is TimerKind.SESSION_ENDED:
            return [self._close(journey)]
        if timer.kind is TimerKind.CART_ABANDONED:
            since = journey.cart_since
            journey.cart_since = None
            return [
                self._signal(
                    journey,
                    SignalKind.CART_ABANDONED,
                    timer.deadline,
                    None,
                    {"cart_since": since.isoformat() if since else None},
                )
            ]
        journey.dropped = True
        return [
            PhaseTransition(
                transition_id=derived_id(
                    journey.site_id, journey.journey_id, "dropped_off", timer.deadline.isoformat()
                ),
                site_id=journey.site_id,
                journey_id=journey.journey_id,
                session_id=journey.session.id,
                kind=TransitionKind.DROPPED_OFF,
                from_phase=journey.phase,
                to_phase=journey.phase,
                furthest_phase=journey.furthest,
                at=timer.deadline,
                seconds_in_previous_phase=(timer.deadline - journey.phase_since).total_seconds(),
                event_id=None,
                event_name=None,
                channel=None,
                touchpoint=None,
                journey_number=self._numbered(journey),
            ),
            self._signal(journey, SignalKind.DROPPED_OFF, timer.deadline, None),
        ]

    # --- records --------------------------------------------------------------------------------

    def _close(self, journey: JourneyState) -> SessionSnapshot:
        journey.session.closed = True
        return self._snapshot(journey)

    def _snapshot(self, journey: JourneyState) -> SessionSnapshot:
        number = self._numbered(journey)
        return snapshot(journey.site_id, journey.journey_id, journey.session, number)

    def _transition(
        self,
        journey: JourneyState,
        event: Event,
        kind: TransitionKind,
        from_phase: str | None,
        seconds: float | None,
    ) -> PhaseTransition:
        return PhaseTransition(
            transition_id=derived_id(
                journey.site_id, journey.journey_id, event.event_id, kind.value, journey.phase
            ),
            site_id=journey.site_id,
            journey_id=journey.journey_id,
            session_id=journey.session.id,
            kind=kind,
            from_phase=from_phase,
            to_phase=journey.phase,
            furthest_phase=journey.furthest,
            at=event.timestamp,
            seconds_in_previous_phase=seconds,
            event_id=event.event_id,
            event_name=event.event,
            channel=_moving_channel(event.channel, journey.session.channel),
            touchpoint=self._model.touchpoint_of(event),
            device=event.device,
            segment="new" if journey.session.started_at <= journey.first_seen else "returning",
            journey_number=self._numbered(journey),
        )

    def _signal(
        self,
        journey: JourneyState,
        kind: SignalKind,
        at: datetime,
        event: Event | None,
        details: dict[str, Any] | None = None,
    ) -> Signal:
        return Signal(
            signal_id=derived_id(
                journey.site_id, journey.journey_id, kind.value, journey.phase, at.isoformat()
            ),
            site_id=journey.site_id,
            journey_id=journey.journey_id,
            kind=kind,
            phase=journey.furthest if kind is SignalKind.PHASE_REACHED else journey.phase,
            at=at,
            event_id=event.event_id if event else None,
            details=details or {},
        )

    def forget(self, site_id: str, journey_id: str) -> None:
        """Erase a journey: no output will describe it again (its queued timers find it gone)."""
        self.journeys.pop((site_id, journey_id))
        self.held.discard((site_id, journey_id))

    # --- state --------------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[tuple[str, str], list[Any] | None]]:
        """Journeys changed since the last call as changelog rows; None for one merged away."""
        return [
            (key, None if journey is None else journey_row(journey, self._model))
            for key, journey in self.journeys.take_changes()
        ]

    def apply_row(self, key: tuple[str, str], row: list[Any] | None) -> None:
        self.journeys.load(key, None if row is None else journey_from_row(key, row, self._model))

    def rebuild_timers(self) -> None:
        """Timers are derived from the journeys; after restoring rows, derive them again."""
        self._rebuild_timers()

    def take_serials(self) -> list[int] | None:
        """The serials, if they moved since the last call (for the changelog)."""
        if not self.serials_moved:
            return None
        self.serials_moved = False
        return list(self.serials)

    def load_serials(self, serials: list[int]) -> None:
        """Serials from the changelog or a state file; never back below any given already."""
        self.serials = [
            max(mine, theirs) for mine, theirs in zip(self.serials, serials, strict=True)
        ]

    def export_state(self) -> dict[str, Any]:
        return {
            "newest": self.clock.micros,
            "serials": list(self.serials),
            "journeys": [[*key, *journey_row(j, self._model)] for key, j in self.journeys.items()],
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.clock.set_micros(state.get("newest"))
        self.load_serials(state.get("serials") or [0, 0])
        for site, journey_id, *row in state["journeys"]:
            self.apply_row((site, journey_id), row)
        self._rebuild_timers()
