"""Sessions, identities and journey phases from a stream of events: pure logic, no I/O.

Two stages, each a deterministic state machine over one ordered stream:

* `IdentityResolver`, keyed like the collector's partitions (by device, or by the id an alias
  merges away): drops duplicate event ids, links anonymous ids to customers, and says which
  journey each event belongs to.
* `JourneyTracker`, keyed by journey: sessions, phases, drop-off and abandoned-cart timers in
  event time, and signals.

The same events in the same order give the same outputs with the same ids, which is what makes a
replay after a crash harmless downstream. State is plain data (`export_state`/`restore_state`).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from contracts.events import EARLIEST_EVENT_TIME, DeadLetter, DeadLetterReason, Event, EventType
from contracts.journeys import (
    IdentityLink,
    LinkKind,
    PhaseTransition,
    SessionSnapshot,
    Signal,
    SignalKind,
    TransitionKind,
    derived_id,
)
from contracts.phases import PhaseModel
from contracts.records import SessionizerOutput
from contracts.timecodec import from_micros, maybe_from_micros, maybe_micros

DEDUP_WINDOW = 16  # event ids remembered per device: a retried batch is caught within it
SNAPSHOT_EVERY = 10  # events between session snapshots of an open session
ENGAGED_SECONDS = 10.0
ENGAGED_PAGE_VIEWS = 2


# Channels that say nothing about how the customer came: a click inside the shop, or an event a
# shop's server sent. A transition on such an event is credited to the visit's channel.
_NO_NEW_CHANNEL = frozenset({"internal", "direct"})


def _moving_channel(event_channel: str, session_channel: str) -> str:
    return session_channel if event_channel in _NO_NEW_CHANNEL else event_channel


@dataclass(frozen=True)
class JourneyRules:
    model: PhaseModel
    session_timeout: timedelta = timedelta(minutes=30)
    max_session: timedelta = timedelta(hours=12)
    allowed_lateness: timedelta = timedelta(minutes=10)


# --- stage 1: identities ---------------------------------------------------------------------


def _event_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=4).digest()


@dataclass(slots=True)
class IdentityState:
    """Per device key: the customer it belongs to (if known) and its recent event ids."""

    customer: str | None = None
    recent: bytes = b""  # the last DEDUP_WINDOW event-id hashes, 4 bytes each


@dataclass(frozen=True)
class Resolution:
    """What stage 1 made of an event: its journey (None: a duplicate, dropped), the identity
    link it established, and the journey whose history now belongs to the customer."""

    journey_id: str | None
    link: IdentityLink | None = None
    merge_from: str | None = None


class IdentityResolver:
    """Which journey an event belongs to.

    An anonymous id's first login claims its history for that customer (`linked`). A device
    already linked that logs in as someone else is relinked for later events only: two customers
    are never merged by a login. An alias merges explicitly. Placeholder ids never get here (the
    collector refuses them).
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], IdentityState] = {}
        self._changed: set[tuple[str, str]] = set()
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._states)

    def resolve(self, event: Event) -> Resolution:
        key = (event.site_id, event.visitor_id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = IdentityState()
        digest = _event_hash(event.event_id)
        if any(state.recent[i : i + 4] == digest for i in range(0, len(state.recent), 4)):
            self.duplicates += 1
            return Resolution(journey_id=None)
        state.recent = (state.recent + digest)[-4 * DEDUP_WINDOW :]
        self._changed.add(key)

        visitor = event.visitor_id
        customer = event.user_id
        if customer is None or customer == visitor:
            return Resolution(journey_id=state.customer or visitor)
        if event.type is EventType.ALIAS:
            kind = LinkKind.ALIASED
        elif state.customer is None:
            kind = LinkKind.LINKED
        elif state.customer != customer:
            kind = LinkKind.RELINKED
        else:
            return Resolution(journey_id=customer)
        state.customer = customer
        link = IdentityLink(
            link_id=derived_id(event.site_id, visitor, customer, event.event_id),
            site_id=event.site_id,
            previous_id=visitor,
            customer_id=customer,
            kind=kind,
            at=event.timestamp,
            event_id=event.event_id,
        )
        merge_from = None if kind is LinkKind.RELINKED else visitor
        return Resolution(journey_id=customer, link=link, merge_from=merge_from)

    def take_changes(self) -> list[tuple[tuple[str, str], list[Any]]]:
        """The states changed since the last call, as rows for a changelog."""
        changed, self._changed = self._changed, set()
        return [(key, self._row(key)) for key in sorted(changed)]

    def _row(self, key: tuple[str, str]) -> list[Any]:
        state = self._states[key]
        return [state.customer, base64.b64encode(state.recent).decode()]

    def apply_row(self, key: tuple[str, str], row: list[Any]) -> None:
        self._states[key] = IdentityState(row[0], base64.b64decode(row[1]))

    def export_state(self) -> list[list[Any]]:
        return [[*key, *self._row(key)] for key in self._states]

    def restore_state(self, rows: Iterable[list[Any]]) -> None:
        for site, visitor, *row in rows:
            self.apply_row((site, visitor), row)


# --- stage 2: journeys -----------------------------------------------------------------------


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


class _Timer(NamedTuple):
    """A tuple, so the heap compares timers in C: (deadline, site, journey, kind) is also the
    order in which timers due together fire, the same after a restore as before."""

    deadline: datetime
    site_id: str
    journey_id: str
    kind: str


class JourneyTracker:
    """Sessions, phases, timers and signals for the journeys of one partition.

    Time is event time. The partition's watermark is the newest event time seen minus the
    allowed lateness; timers (session end, drop-off, abandoned cart) fire when it passes them.
    An event older than its journey's newest event by more than the allowed lateness cannot be
    placed in a closed session: it is routed out as a late event, not folded in.
    """

    def __init__(self, rules: JourneyRules) -> None:
        self._rules = rules
        self._model = rules.model
        self._journeys: dict[tuple[str, str], JourneyState] = {}
        self._timers: list[_Timer] = []
        self._newest: datetime | None = None
        self._changed: set[tuple[str, str]] = set()
        self.late_events = 0
        # Journeys whose next events wait for another partition's hand-off: their timers wait
        # with them (see routing.JourneyStage).
        self.held: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._journeys)

    @property
    def open_sessions(self) -> int:
        return sum(not j.session.closed for j in self._journeys.values())

    @property
    def watermark(self) -> datetime | None:
        return None if self._newest is None else self._newest - self._rules.allowed_lateness

    def journey(self, site_id: str, journey_id: str) -> JourneyState | None:
        return self._journeys.get((site_id, journey_id))

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
        journey = self._journeys.get(key)
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
            outputs.extend(self._fire_due(journey, event.timestamp, watermark))
            self._continue(journey, event, outputs)
        self._changed.add(key)
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
            session=self._new_session(event, journey_id),
        )
        self._journeys[(event.site_id, journey_id)] = journey
        self._record(journey, event, outputs, behind=False)
        outputs.append(self._transition(journey, event, TransitionKind.ENTERED, None, None))
        outputs.append(self._signal(journey, SignalKind.PHASE_REACHED, event.timestamp, event))
        return journey

    def _continue(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput]
    ) -> None:
        # Only possible for an event of another device of the customer whose partition ran
        # behind (in one stream such an event is late): it counts, but it is no longer what the
        # customer is doing now.
        behind = event.timestamp < journey.last_event_at - self._rules.allowed_lateness
        session = journey.session
        gap = event.timestamp - session.last_event_at
        if (
            session.closed
            or gap > self._rules.session_timeout
            or event.timestamp - session.started_at > self._rules.max_session
        ):
            if not session.closed:
                outputs.append(self._close(journey))
            journey.session = self._new_session(event, journey.journey_id)
        if journey.dropped:
            journey.dropped = False
            outputs.append(
                self._transition(journey, event, TransitionKind.RETURNED, journey.phase, None)
            )
            outputs.append(self._signal(journey, SignalKind.RETURNED, event.timestamp, event))
        self._record(journey, event, outputs, behind)
        self._move(journey, event, outputs, behind)

    def _new_session(self, event: Event, journey_id: str) -> SessionState:
        return SessionState(
            id=derived_id(event.site_id, journey_id, event.event_id),
            started_at=event.timestamp,
            last_event_at=event.timestamp,
            channel=event.channel,
        )

    def _record(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput], behind: bool
    ) -> None:
        session = journey.session
        was_engaged = session.engaged
        session.events += 1
        # An out-of-order event joins the session without moving its end backwards.
        session.last_event_at = max(session.last_event_at, event.timestamp)
        session.started_at = min(session.started_at, event.timestamp)
        journey.last_event_at = max(journey.last_event_at, event.timestamp)
        session.anonymous_id = event.anonymous_id or session.anonymous_id
        session.user_id = event.user_id or session.user_id
        if event.type is EventType.PAGE:
            session.page_views += 1
            path = event.context.page.path
            session.landing_path = session.landing_path or path
            session.exit_path = path or session.exit_path
        if self._model.is_order(event):
            session.conversions += 1
            journey.orders += 1
            journey.cart_since = None
        elif self._model.is_cart_add(event) and not behind:  # the order may have come since
            journey.cart_since = event.timestamp
        session.engaged = (
            session.page_views >= ENGAGED_PAGE_VIEWS
            or session.conversions > 0
            or (session.last_event_at - session.started_at).total_seconds() >= ENGAGED_SECONDS
        )
        if (
            session.events == 1
            or session.engaged != was_engaged
            or (session.events % SNAPSHOT_EVERY == 0)
        ):
            outputs.append(self._snapshot(journey))

    def _target_phase(self, event: Event, orders_before: int) -> str | None:
        repeat = self._model.repeat_purchase_phase
        if repeat and self._model.is_order(event) and orders_before >= 1:
            return repeat
        return self._model.phase_of(event)

    def _move(
        self, journey: JourneyState, event: Event, outputs: list[SessionizerOutput], behind: bool
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
        if behind and index(target) <= index(journey.furthest):
            return  # an earlier step on another device: it moves the journey only further
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
        source = self._journeys.pop((site_id, from_journey), None)
        if source is None:
            return []
        self._changed.add((site_id, from_journey))
        return self._absorb(source, into_journey)

    def hand_off(
        self, site_id: str, journey_id: str, watermark: datetime | None
    ) -> tuple[list[SessionizerOutput], list[Any] | None]:
        """Let a journey go to the partition of the customer it now belongs to: the timers due
        by `watermark` fire here first, under its old id, as they would have before the login
        in one stream. Returns those outputs and the journey as a row (None: no such journey)."""
        outputs = self.catch_up(site_id, journey_id, watermark)
        journey = self._journeys.pop((site_id, journey_id), None)
        if journey is None:
            return [], None
        self._changed.add((site_id, journey_id))
        return outputs, _journey_row(journey, self._model)

    def catch_up(
        self, site_id: str, journey_id: str, watermark: datetime | None
    ) -> list[SessionizerOutput]:
        """Fire the journey's timers due by `watermark`, as one stream would have by now."""
        journey = self._journeys.get((site_id, journey_id))
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
            _journey_from_row((site_id, from_journey), row, self._model), into_journey
        )

    def _absorb(self, source: JourneyState, into_journey: str) -> list[SessionizerOutput]:
        site_id, from_journey = source.site_id, source.journey_id
        self._changed.add((site_id, into_journey))
        target = self._journeys.get((site_id, into_journey))
        if target is None:
            source.journey_id = into_journey
            self._journeys[(site_id, into_journey)] = source
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
            )
        ]

    # --- timers ---------------------------------------------------------------------------------

    def _deadlines(self, journey: JourneyState) -> list[tuple[datetime, str]]:
        deadlines = []
        if not journey.session.closed:
            deadlines.append(
                (journey.session.last_event_at + self._rules.session_timeout, "session")
            )
        dropoff = self._model.dropoff.get(journey.phase)
        if dropoff is not None and not journey.dropped:
            deadlines.append((journey.last_event_at + dropoff, "dropoff"))
        abandon = self._model.cart_abandon_after
        if abandon is not None and journey.cart_since is not None:
            deadlines.append((journey.cart_since + abandon, "cart"))
        return deadlines

    def _next_timer(self, journey: JourneyState) -> _Timer | None:
        deadlines = self._deadlines(journey)
        if not deadlines:
            return None
        deadline, kind = min(deadlines)
        return _Timer(deadline, journey.site_id, journey.journey_id, kind)

    def _schedule(self, journey: JourneyState) -> None:
        """Queue the journey's earliest deadline; the next is queued when that one fires.

        Entries of earlier deadlines that a later event moved stay in the heap until they come
        up and are found stale; a rebuild drops them when they pile up.
        """
        timer = self._next_timer(journey)
        if timer is not None:
            heapq.heappush(self._timers, timer)
        if len(self._timers) > 4 * len(self._journeys) + 1024:
            self._rebuild_timers()

    def _rebuild_timers(self) -> None:
        timers = (self._next_timer(journey) for journey in self._journeys.values())
        self._timers = [timer for timer in timers if timer is not None]
        heapq.heapify(self._timers)

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
        if self._newest is None or now <= self._newest:
            return []
        return self._advance(now)

    def _advance(self, event_time: datetime) -> list[SessionizerOutput]:
        if self._newest is None or event_time > self._newest:
            self._newest = event_time
        watermark = self.watermark
        assert watermark is not None
        return self.fire_until(watermark)

    def fire_until(self, watermark: datetime) -> list[SessionizerOutput]:
        """Fire every timer due by `watermark`, except those of the journeys in `held`."""
        outputs: list[SessionizerOutput] = []
        while self._timers and self._timers[0].deadline <= watermark:
            timer = heapq.heappop(self._timers)
            key = (timer.site_id, timer.journey_id)
            journey = self._journeys.get(key)
            if journey is None or key in self.held or self._next_timer(journey) != timer:
                continue  # stale (the journey moved on or merged away), or rescheduled on release
            outputs.extend(self._fire(journey, timer))
            self._schedule(journey)
        return outputs

    def reschedule(self, site_id: str, journey_id: str) -> None:
        """Queue a journey's next timer again, after it left `held`."""
        journey = self._journeys.get((site_id, journey_id))
        if journey is not None:
            self._schedule(journey)

    def _fire(self, journey: JourneyState, timer: _Timer) -> list[SessionizerOutput]:
        self._changed.add((journey.site_id, journey.journey_id))
        if timer.kind == "session":
            return [self._close(journey)]
        if timer.kind == "cart":
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
            ),
            self._signal(journey, SignalKind.DROPPED_OFF, timer.deadline, None),
        ]

    # --- records --------------------------------------------------------------------------------

    def _close(self, journey: JourneyState) -> SessionSnapshot:
        journey.session.closed = True
        return self._snapshot(journey)

    def _snapshot(self, journey: JourneyState) -> SessionSnapshot:
        session = journey.session
        return SessionSnapshot(
            session_id=session.id,
            site_id=journey.site_id,
            journey_id=journey.journey_id,
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
        )

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

    # --- state --------------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[tuple[str, str], list[Any] | None]]:
        """Journeys changed since the last call as changelog rows; None for one merged away."""
        changed, self._changed = self._changed, set()
        return [
            (key, _journey_row(self._journeys[key], self._model) if key in self._journeys else None)
            for key in sorted(changed)
        ]

    def apply_row(self, key: tuple[str, str], row: list[Any] | None) -> None:
        if row is None:
            self._journeys.pop(key, None)
        else:
            self._journeys[key] = _journey_from_row(key, row, self._model)

    @property
    def newest(self) -> int | None:
        return maybe_micros(self._newest)

    def restore_newest(self, micros: int | None) -> None:
        self._newest = maybe_from_micros(micros)

    def rebuild_timers(self) -> None:
        """Timers are derived from the journeys; after restoring rows, derive them again."""
        self._rebuild_timers()

    def export_state(self) -> dict[str, Any]:
        return {
            "newest": self.newest,
            "journeys": [
                [*key, *_journey_row(j, self._model)] for key, j in self._journeys.items()
            ],
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.restore_newest(state.get("newest"))
        for site, journey_id, *row in state["journeys"]:
            self.apply_row((site, journey_id), row)
        self._rebuild_timers()


def _journey_row(j: JourneyState, model: PhaseModel) -> list[Any]:
    """A journey as a compact changelog row; the key holds site and journey id.

    State is kept per visitor, so bytes count: times are microseconds after the journey's first
    event (exact, so a restored journey computes the same deadlines), phases are positions in
    the model, the session id is 22 base64 characters, and values equal to one already stored
    are left out (the session's channel when it is the first visit's; 0 for an anonymous id
    that is the journey id).
    """
    s = j.session
    t0 = maybe_micros(j.first_seen)
    assert t0 is not None

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
        0 if s.anonymous_id == j.journey_id else s.anonymous_id, s.user_id,
    ]  # fmt: skip


def _journey_from_row(key: tuple[str, str], row: list[Any], model: PhaseModel) -> JourneyState:
    (t0, first_channel, first_touchpoint, phase, phase_since, furthest, last_event_at, orders,
     flags, cart_since, session_id, started_at, session_last, events, page_views, conversions,
     channel, landing_path, exit_path, anonymous_id, user_id) = row  # fmt: skip

    def at(offset: int) -> datetime:
        return from_micros(t0 + offset)

    session = SessionState(
        id=str(uuid.UUID(bytes=base64.urlsafe_b64decode(session_id + "=="))),
        started_at=at(started_at), last_event_at=at(session_last), events=events,
        page_views=page_views, conversions=conversions, channel=channel or first_channel,
        landing_path=landing_path, exit_path=exit_path or landing_path, engaged=bool(flags & 2),
        closed=bool(flags & 4), anonymous_id=key[1] if anonymous_id == 0 else anonymous_id,
        user_id=user_id,
    )  # fmt: skip
    return JourneyState(
        site_id=key[0], journey_id=key[1], first_seen=from_micros(t0), first_channel=first_channel,
        first_touchpoint=first_touchpoint, phase=model.phases[phase],
        phase_since=at(phase_since), furthest=model.phases[furthest],
        last_event_at=at(last_event_at), session=session, orders=orders, dropped=bool(flags & 1),
        cart_since=None if cart_since is None else at(cart_since),
    )  # fmt: skip


def state_key(kind: bytes, key: tuple[str, str]) -> bytes:
    return b"\x1f".join((kind, key[0].encode(), key[1].encode()))


class JourneyEngine:
    """Both stages over one ordered stream: the embedded pipeline, and the reference that the
    Kafka stages (`routing`) must match for a single events partition.

    Because every journey of the stream is here, a login merges the anonymous history at once.
    """

    def __init__(self, rules: JourneyRules) -> None:
        self.identities = IdentityResolver()
        self.journeys = JourneyTracker(rules)

    def process(self, event: Event) -> list[SessionizerOutput]:
        resolution = self.identities.resolve(event)
        if resolution.journey_id is None:
            return []
        outputs: list[SessionizerOutput] = []
        if resolution.link is not None:
            outputs.append(resolution.link)
        if resolution.merge_from is not None:
            outputs.extend(
                self.journeys.merge(event.site_id, resolution.merge_from, resolution.journey_id)
            )
        if event.type is EventType.ALIAS:
            return outputs  # an alias links ids; it is not an interaction of the customer
        outputs.extend(self.journeys.process(event, resolution.journey_id))
        return outputs

    def pass_time(self, now: datetime) -> list[SessionizerOutput]:
        return self.journeys.pass_time(now)

    @property
    def active_journeys(self) -> int:
        return len(self.journeys)

    def export_state(self) -> dict[str, Any]:
        return {
            "identities": self.identities.export_state(),
            "journeys": self.journeys.export_state(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.identities.restore_state(state["identities"])
        self.journeys.restore_state(state["journeys"])
