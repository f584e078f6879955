"""The sessionizer as two stages, so that each customer's journey lives on one partition: pure
logic, no I/O (`encoding` turns their records and state changes into bytes).

The collector keys events by device. A customer who uses two devices, or whose shop sends the
order from its server under the customer id, has events on several partitions; one state per
customer needs them on one. So:

* `IdentityStage`, per events partition (keyed by device): drops duplicates, resolves each
  event's journey and routes it, keyed by that journey, to the journeys topic.
* `JourneyStage`, per journeys-topic partition (keyed by journey): sessions, phases, timers.

When a login claims a device's anonymous journey for a customer, that journey lives where its
key put it, not where the customer's does. Stage 1 then routes two records: a `MERGE` to the
anonymous journey's partition, which hands the journey over (a `HANDOFF`, keyed by the customer),
and the login event itself, marked with the journey it takes over, to the customer's partition.
The customer's events wait there until the hand-off arrives, so they are applied in the order
one stream would have applied them, whenever the hand-off comes.

Time: each events partition's watermark travels with its events (`Routed.watermark`) and, after
every batch, as a `WATERMARK` record to every journeys partition. A journey's timers fire when
the slowest events partition has passed them, or before the journey's next event once its own
events partition had. Either way a journey's outputs are those of one stream of its events, in
their events partition's order: the same after a crash, a restart or a rebalance, whatever the
order in which the partitions' records meet on the journeys topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts.events import Event, EventType
from contracts.journeys import journey_key
from contracts.records import SessionizerOutput
from contracts.timecodec import from_micros, maybe_from_micros, maybe_micros
from services.sessionizer.clock import EventClock
from services.sessionizer.identities import IdentityResolver
from services.sessionizer.journeys import JourneyTracker
from services.sessionizer.reorder import ReorderBuffer
from services.sessionizer.rules import JourneyRules
from services.sessionizer.store import TrackedState


class StateKind(StrEnum):
    """What a state change is of; each kind has its rows in the stage's changelog."""

    IDENTITY = "identity"  # a device's identity (identity stage)
    CLOCK = "clock"  # the events partition's clock (identity stage)
    HELD = "held"  # an event held to be put back in time order (identity stage)
    HOLD_CLOCK = "hold_clock"  # the clock of that hold (identity stage)
    JOURNEY = "journey"  # a journey (journey stage)
    WAITING = "waiting"  # a journey's records that wait for a hand-off
    HANDOFFS = "handoffs"  # hand-offs that came before the event that waits for them
    UPSTREAM = "upstream"  # an events partition's clock, as the journey stage heard it
    SERIAL = "serial"  # the last journey and session serials the journey stage gave


@dataclass(frozen=True, slots=True)
class StateChange:
    """One key's new value (None: removed), in plain data; `encoding` writes it as a changelog
    record."""

    kind: StateKind
    key: tuple[Any, ...]
    value: Any


class RoutedKind(StrEnum):
    EVENT = "event"
    MERGE = "merge"
    HANDOFF = "handoff"
    WATERMARK = "watermark"
    ERASE = "erase"


@dataclass(frozen=True, slots=True)
class Routed:
    """A record on the journeys topic.

    * `EVENT`: `event` belongs to `journey_id`; when `other` is set, that journey's history
      becomes this journey's first (a login or an alias).
    * `MERGE`: hand journey `journey_id` over to journey `other`.
    * `HANDOFF`: journey `other`, handed over to journey `journey_id`, as a state row in `state`
      (None: there was no such journey).
    * `WATERMARK`: events partition `upstream` has seen events up to `watermark`.
    * `ERASE`: forget journey `journey_id` and whatever waits for it (an erasure).

    `EVENT` and `MERGE` also name their events partition (`upstream`) and carry its watermark
    just before them (`watermark`). Times are microseconds since the epoch.
    """

    kind: RoutedKind
    site_id: str = ""
    journey_id: str = ""
    event: Event | None = None
    other: str | None = None
    watermark: int | None = None
    upstream: int | None = None
    state: list[Any] | None = None

    @property
    def partition_key(self) -> bytes:
        return journey_key(self.site_id, self.journey_id)


# --- stage 1 -----------------------------------------------------------------------------------


class IdentityStage:
    """Per events partition: the events back in time order (`reorder`), their journeys, and
    the partition's progress in event time."""

    def __init__(self, rules: JourneyRules, partition: int) -> None:
        self.identities = IdentityResolver()
        self.partition = partition
        self.clock = EventClock(rules.allowed_lateness)
        self.hold = ReorderBuffer(rules.reorder_window)

    @property
    def newest(self) -> int | None:
        """The newest event time routed so far (microseconds): what `WATERMARK` records carry."""
        return self.clock.micros

    def route(self, event: Event) -> tuple[list[SessionizerOutput], list[Routed]]:
        """Hold `event`; the identity links and the records for the journeys topic of the
        events that this makes due, in time order."""
        return self._route_all(self.hold.add(event))

    def _route_all(self, events: list[Event]) -> tuple[list[SessionizerOutput], list[Routed]]:
        outputs: list[SessionizerOutput] = []
        routed: list[Routed] = []
        for event in events:
            links, records = self._route(event)
            outputs += links
            routed += records
        return outputs, routed

    def _route(self, event: Event) -> tuple[list[SessionizerOutput], list[Routed]]:
        """The identity link the event makes (if any), and the records for the journeys topic;
        nothing for a duplicate."""
        resolution = self.identities.resolve(event)
        journey_id = resolution.journey_id
        if journey_id is None:
            return [], []
        watermark = maybe_micros(self.clock.watermark)
        outputs: list[SessionizerOutput] = [] if resolution.link is None else [resolution.link]
        routed: list[Routed] = []
        merge_from = resolution.merge_from
        if merge_from is not None:
            routed.append(
                Routed(
                    RoutedKind.MERGE,
                    event.site_id,
                    merge_from,
                    other=journey_id,
                    watermark=watermark,
                    upstream=self.partition,
                )
            )
        routed.append(
            Routed(
                RoutedKind.EVENT,
                event.site_id,
                journey_id,
                event=event,
                other=merge_from,
                watermark=watermark,
                upstream=self.partition,
            )
        )
        if event.type is not EventType.ALIAS:  # an alias is no interaction: it moves no clock
            self.clock.observe(event.timestamp)
        return outputs, routed

    def erase(self, site_id: str, visitor_id: str) -> Routed:
        """Forget the id's identity and its events still held; the record that makes the
        journey stage forget its journey."""
        self.identities.forget(site_id, visitor_id)
        self.hold.drop(site_id, [visitor_id])
        return Routed(RoutedKind.ERASE, site_id, visitor_id)

    def release_due(self, now: datetime) -> tuple[list[SessionizerOutput], list[Routed]]:
        """The wall clock is at `now` and the partition has nothing left to read: route the
        held events that are the hold's window older than it."""
        return self._route_all(self.hold.pass_time(now))

    def pass_time(self, now: datetime, downstream: Iterable[int]) -> list[tuple[int, Routed]]:
        """No event came until `now` (the wall clock, with nothing left to read): the partition
        has seen everything up to it, as if an event had come then. Returns the `WATERMARK`
        records that say so to the journeys partitions; none if the clock did not move. Call
        `release_due` first: the clock moves no further than the oldest event still held,
        which must not be late once it goes.

        A partition that has never had an event has no clock to move: its first events may be
        history replayed into a new pipeline, which a clock at `now` would find late. It asks
        to be left out of the watermark until it has one (`idle_markers`)."""
        if self.clock.newest is None:
            return idle_markers(self.partition, downstream)
        oldest_held = self.hold.oldest
        if oldest_held is not None:
            now = min(now, oldest_held)
        if not self.clock.observe(now):
            return []
        return upstream_watermarks(self.partition, self.newest, downstream)

    def take_changes(self) -> list[StateChange]:
        """The batch's state changes: the identities it changed, the events held or let go,
        and the clocks."""
        changes = [
            StateChange(StateKind.IDENTITY, key, row) for key, row in self.identities.take_changes()
        ]
        changes += [
            StateChange(StateKind.HELD, (place,), event)
            for place, event in self.hold.take_changes()
        ]
        changes.append(StateChange(StateKind.CLOCK, (), self.newest))
        changes.append(StateChange(StateKind.HOLD_CLOCK, (), self.hold.micros))
        return changes

    def apply_change(self, change: StateChange) -> None:
        if change.kind is StateKind.CLOCK:
            self.clock.set_micros(change.value)
        elif change.kind is StateKind.HOLD_CLOCK:
            self.hold.set_micros(change.value)
        elif change.kind is StateKind.HELD:
            (place,) = change.key
            self.hold.load(place, change.value)
        elif change.kind is StateKind.IDENTITY:
            self.identities.apply_row(change.key, change.value)

    def finish_restore(self) -> None:
        """Identities are used as stored; the events read back are held again."""
        self.hold.finish_restore()

    def snapshot(self) -> dict[str, Any]:
        """All the stage holds, in one order: what a restore from the changelog must rebuild."""
        return {
            "identities": sorted(self.identities.export_state(), key=lambda row: row[:2]),
            "clock": self.newest,
            "hold": self.hold.snapshot(),
            "hold_clock": self.hold.micros,
        }


# --- stage 2 -----------------------------------------------------------------------------------


class JourneyStage:
    """Per journeys-topic partition: the journeys keyed here, and the hand-offs between them."""

    def __init__(self, rules: JourneyRules, upstream_partitions: int, partition: int = 0) -> None:
        self.journeys = JourneyTracker(rules, partition)
        self._upstream_partitions = upstream_partitions
        self._lateness = rules.allowed_lateness
        # events partition -> its clock, as heard here; no time: caught up, never had an event
        self._upstream: TrackedState[int, EventClock] = TrackedState()
        # journeys whose next records wait for a hand-off, with those records in order
        self._waiting: TrackedState[tuple[str, str], list[Routed]] = TrackedState()
        # hand-offs that came before the event that waits for them: (site, from, into)
        self._handoffs: TrackedState[tuple[str, str, str], list[list[Any] | None]] = TrackedState()
        self.applied = 0  # events applied to their journeys (not those still waiting)

    @property
    def watermark(self) -> datetime | None:
        """The slowest events partition's newest event time, less the allowed lateness; None
        until every events partition has been heard of. (One not heard of yet may still bring
        events older than all the others': a timer fired before would fire or not depending on
        when its first records came.) A partition that is caught up and has never had an
        event is left out: live, its first events are as new as the others'."""
        if len(self._upstream) < self._upstream_partitions:
            return None
        slowest = min(
            (clock.newest for clock in self._upstream.values() if clock.newest is not None),
            default=None,
        )
        return None if slowest is None else slowest - self._lateness

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def process(self, routed: Routed) -> tuple[list[SessionizerOutput], list[Routed]]:
        """Outputs, and records for the journeys topic (hand-offs)."""
        if routed.kind is RoutedKind.WATERMARK:
            assert routed.upstream is not None
            if routed.watermark is None:
                self._idle_without_events(routed.upstream)
            else:
                self._progress(routed.upstream, from_micros(routed.watermark))
            watermark = self.watermark
            return ([] if watermark is None else self.journeys.fire_until(watermark)), []
        if routed.kind is RoutedKind.ERASE:
            self._forget(routed.site_id, routed.journey_id)
            return [], []
        if routed.kind is RoutedKind.HANDOFF:
            assert routed.other is not None
            stash = (routed.site_id, routed.other, routed.journey_id)
            stashed = self._handoffs.for_update(stash)
            if stashed is None:
                self._handoffs.put(stash, [routed.state])
            else:
                stashed.append(routed.state)
            return self._release((routed.site_id, routed.journey_id))
        self._observe(routed)
        key = (routed.site_id, routed.journey_id)
        queue = self._waiting.for_update(key)
        if queue is not None:
            queue.append(routed)
            return [], []
        handled = self._handle(routed)
        if handled is None:
            self._waiting.put(key, [routed])
            self.journeys.held.add(key)
            return [], []
        return handled

    def _forget(self, site_id: str, journey_id: str) -> None:
        """Erase a journey, the records waiting for its hand-off, and hand-offs from or into
        it."""
        self.journeys.forget(site_id, journey_id)
        self._waiting.pop((site_id, journey_id))
        for stash in [s for s in self._handoffs if s[0] == site_id and journey_id in s[1:]]:
            self._handoffs.pop(stash)

    def _observe(self, routed: Routed) -> None:
        """What an `EVENT` or a `MERGE` tells of its events partition's progress. The partition's
        own `WATERMARK` comes only after its batch, and records of other partitions may come in
        between: without this, their watermarks could fire the timers of a journey whose events
        partition had not yet been heard of, before that journey's next event."""
        if routed.upstream is None:
            return
        watermark = maybe_from_micros(routed.watermark)
        newest = None if watermark is None else watermark + self._lateness
        event = routed.event
        if event is not None and event.type is not EventType.ALIAS:
            newest = event.timestamp if newest is None else max(newest, event.timestamp)
        if newest is not None:
            self._progress(routed.upstream, newest)

    def _progress(self, upstream: int, newest: datetime) -> None:
        clock = self._upstream.get(upstream)
        if clock is None:
            self._upstream.put(upstream, EventClock(self._lateness, newest))
        elif clock.observe(newest):
            self._upstream.for_update(upstream)

    def _idle_without_events(self, upstream: int) -> None:
        if upstream not in self._upstream:
            self._upstream.put(upstream, EventClock(self._lateness))

    def _handle(self, routed: Routed) -> tuple[list[SessionizerOutput], list[Routed]] | None:
        """Apply an `EVENT` or a `MERGE`; None when it must wait for a hand-off."""
        site = routed.site_id
        if routed.kind is RoutedKind.MERGE:
            assert routed.other is not None
            fired, state = self.journeys.hand_off(
                site, routed.journey_id, maybe_from_micros(routed.watermark)
            )
            handoff = Routed(RoutedKind.HANDOFF, site, routed.other, other=routed.journey_id,
                             state=state)  # fmt: skip
            return fired, [handoff]
        event = routed.event
        assert event is not None
        watermark = maybe_from_micros(routed.watermark)
        outputs: list[SessionizerOutput] = []
        if routed.other is not None:
            stash = (site, routed.other, routed.journey_id)
            stashed = self._handoffs.get(stash)
            if not stashed:
                return None
            self._handoffs.for_update(stash)
            state = stashed.pop(0)
            if not stashed:
                self._handoffs.pop(stash)
            # as in one stream: what was due fires before the merge, under the journey's id
            outputs += self.journeys.catch_up(site, routed.journey_id, watermark)
            if state is not None:
                outputs += self.journeys.take_over(site, routed.other, routed.journey_id, state)
        if event.type is not EventType.ALIAS:  # an alias links ids; it is no interaction
            outputs += self.journeys.apply(event, routed.journey_id, watermark)
        self.applied += 1
        return outputs, []

    def _release(self, key: tuple[str, str]) -> tuple[list[SessionizerOutput], list[Routed]]:
        """Apply a waiting journey's records for as long as their hand-offs are here."""
        queue = self._waiting.for_update(key)
        if queue is None:
            return [], []
        outputs: list[SessionizerOutput] = []
        routed: list[Routed] = []
        while queue:
            handled = self._handle(queue[0])
            if handled is None:
                break
            del queue[0]
            outputs += handled[0]
            routed += handled[1]
        if not queue:
            self._waiting.pop(key)
            self.journeys.held.discard(key)
            self.journeys.reschedule(*key)
            watermark = self.watermark
            if watermark is not None:
                outputs += self.journeys.fire_until(watermark)
        return outputs, routed

    # --- state ----------------------------------------------------------------------------------

    def take_changes(self) -> list[StateChange]:
        """The batch's state changes: journeys, waiting records, stashed hand-offs, clocks."""
        changes = [
            StateChange(StateKind.JOURNEY, key, row) for key, row in self.journeys.take_changes()
        ]
        changes += [
            StateChange(StateKind.WAITING, key, queue)
            for key, queue in self._waiting.take_changes()
        ]
        changes += [
            StateChange(StateKind.HANDOFFS, key, stashed)
            for key, stashed in self._handoffs.take_changes()
        ]
        changes += [
            StateChange(StateKind.UPSTREAM, (partition,), None if clock is None else clock.micros)
            for partition, clock in self._upstream.take_changes()
        ]
        serials = self.journeys.take_serials()
        if serials is not None:
            changes.append(StateChange(StateKind.SERIAL, (), serials))
        return changes

    def apply_change(self, change: StateChange) -> None:
        kind, key, value = change.kind, change.key, change.value
        if kind is StateKind.UPSTREAM:
            (partition,) = key
            self._upstream.load(partition, EventClock(self._lateness, maybe_from_micros(value)))
        elif kind is StateKind.JOURNEY:
            self.journeys.apply_row(key, value)
        elif kind is StateKind.SERIAL:
            self.journeys.load_serials(value)
        elif kind is StateKind.WAITING:
            self._waiting.load(key, value)
        elif kind is StateKind.HANDOFFS:
            self._handoffs.load(key, value)

    def finish_restore(self) -> None:
        self.journeys.held = set(self._waiting)
        self.journeys.rebuild_timers()

    def snapshot(self) -> dict[str, Any]:
        """All the stage holds, in one order: what a restore from the changelog must rebuild
        (timers are derived from the journeys)."""
        tracker = self.journeys.export_state()
        return {
            "journeys": sorted(tracker["journeys"], key=lambda row: row[:2]),
            "clock": tracker["newest"],
            "serials": tracker["serials"],
            "waiting": sorted(
                (key, [repr(r) for r in queue]) for key, queue in self._waiting.items()
            ),
            "handoffs": sorted(self._handoffs.items(), key=lambda item: item[0]),
            "upstream": sorted(
                (partition, None if clock is None else clock.micros)
                for partition, clock in self._upstream.items()
            ),
            "held": sorted(self.journeys.held),
        }


def upstream_watermarks(
    upstream: int, newest: int | None, downstream: Iterable[int]
) -> list[tuple[int, Routed]]:
    """The `WATERMARK` record for every journeys partition, after a batch of events partition
    `upstream`; none before its first event."""
    if newest is None:
        return []
    marker = Routed(RoutedKind.WATERMARK, watermark=newest, upstream=upstream)
    return [(partition, marker) for partition in downstream]


def idle_markers(upstream: int, downstream: Iterable[int]) -> list[tuple[int, Routed]]:
    """The `WATERMARK` record, without a time, for every journeys partition, from events
    partition `upstream` that is caught up and has never had an event: leave it out of the
    watermark until it has."""
    marker = Routed(RoutedKind.WATERMARK, upstream=upstream)
    return [(partition, marker) for partition in downstream]
