"""The sessionizer as two stages, so that each customer's journey lives on one partition: pure
logic, no I/O.

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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from contracts.events import Event, EventType
from contracts.journeys import journey_key
from contracts.records import SessionizerOutput
from contracts.timecodec import maybe_from_micros, maybe_micros
from services.sessionizer.core import (
    IdentityResolver,
    JourneyRules,
    JourneyTracker,
    state_key,
)

WATERMARK_KEY = b"w"


class RoutedKind(StrEnum):
    EVENT = "event"
    MERGE = "merge"
    HANDOFF = "handoff"
    WATERMARK = "watermark"


@dataclass(frozen=True, slots=True)
class Routed:
    """A record on the journeys topic.

    * `EVENT`: `event` belongs to `journey_id`; when `other` is set, that journey's history
      becomes this journey's first (a login or an alias).
    * `MERGE`: hand journey `journey_id` over to journey `other`.
    * `HANDOFF`: journey `other`, handed over to journey `journey_id`, as a state row in `state`
      (None: there was no such journey).
    * `WATERMARK`: events partition `upstream` has seen events up to `watermark`.

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
    """Per events partition: the events' journeys, and the partition's progress in event time."""

    def __init__(self, rules: JourneyRules, partition: int) -> None:
        self.identities = IdentityResolver()
        self.partition = partition
        self._lateness = rules.allowed_lateness
        self._newest: datetime | None = None

    @property
    def newest(self) -> int | None:
        """The newest event time routed so far (microseconds): what `WATERMARK` records carry."""
        return maybe_micros(self._newest)

    def route(self, event: Event) -> tuple[list[SessionizerOutput], list[Routed]]:
        """The identity link the event makes (if any), and the records for the journeys topic;
        nothing for a duplicate."""
        resolution = self.identities.resolve(event)
        journey_id = resolution.journey_id
        if journey_id is None:
            return [], []
        watermark = None if self._newest is None else maybe_micros(self._newest - self._lateness)
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
        if event.type is not EventType.ALIAS and (
            self._newest is None or event.timestamp > self._newest
        ):
            self._newest = event.timestamp  # an alias is no interaction: it moves no clock
        return outputs, routed

    def pass_time(self, now: datetime, downstream: Iterable[int]) -> list[tuple[int, Routed]]:
        """No event came until `now` (the wall clock, with nothing left to read): the partition
        has seen everything up to it, as if an event had come then. Returns the `WATERMARK`
        records that say so to the journeys partitions; none if the clock did not move.

        A partition that has never had an event has no clock to move: its first events may be
        history replayed into a new pipeline, which a clock at `now` would find late. It asks
        to be left out of the watermark until it has one (`idle_markers`)."""
        if self._newest is None:
            return idle_markers(self.partition, downstream)
        if now <= self._newest:
            return []
        self._newest = now
        return upstream_watermarks(self.partition, self.newest, downstream)

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        records: list[tuple[bytes, bytes | None]] = [
            (state_key(b"i", key), orjson.dumps(row)) for key, row in self.identities.take_changes()
        ]
        records.append((WATERMARK_KEY, orjson.dumps(self.newest)))
        return records

    def apply_change(self, key: bytes, value: bytes | None) -> None:
        if key == WATERMARK_KEY:
            self._newest = maybe_from_micros(orjson.loads(value) if value else None)
            return
        kind, site, ident = key.split(b"\x1f", 2)
        if kind == b"i" and value is not None:
            self.identities.apply_row((site.decode(), ident.decode()), orjson.loads(value))

    def finish_restore(self) -> None:
        """Nothing to derive: identities are used as stored."""


# --- stage 2 -----------------------------------------------------------------------------------


class JourneyStage:
    """Per journeys-topic partition: the journeys keyed here, and the hand-offs between them."""

    def __init__(self, rules: JourneyRules, upstream_partitions: int) -> None:
        self.journeys = JourneyTracker(rules)
        self._upstream_partitions = upstream_partitions
        self._lateness = rules.allowed_lateness
        self._lateness_micros = rules.allowed_lateness // timedelta(microseconds=1)
        # events partition -> its newest event time; None: caught up, and never had an event
        self._upstream: dict[int, int | None] = {}
        # journeys whose next records wait for a hand-off, with those records in order
        self._waiting: dict[tuple[str, str], list[Routed]] = {}
        # hand-offs that came before the event that waits for them: (site, from, into)
        self._handoffs: dict[tuple[str, str, str], list[list[Any] | None]] = {}
        self._changed_upstream: set[int] = set()
        self._changed_waiting: set[tuple[str, str]] = set()
        self.applied = 0  # events applied to their journeys (not those still waiting)
        self._changed_handoffs: set[tuple[str, str, str]] = set()

    @property
    def watermark(self) -> datetime | None:
        """The slowest events partition's newest event time, less the allowed lateness; None
        until every events partition has been heard of. (One not heard of yet may still bring
        events older than all the others': a timer fired before would fire or not depending on
        when its first records came.) A partition that is caught up and has never had an
        event is left out: live, its first events are as new as the others'."""
        if len(self._upstream) < self._upstream_partitions:
            return None
        slowest = maybe_from_micros(
            min((t for t in self._upstream.values() if t is not None), default=None)
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
                self._progress(routed.upstream, routed.watermark)
            watermark = self.watermark
            return ([] if watermark is None else self.journeys.fire_until(watermark)), []
        if routed.kind is RoutedKind.HANDOFF:
            assert routed.other is not None
            stash = (routed.site_id, routed.other, routed.journey_id)
            self._handoffs.setdefault(stash, []).append(routed.state)
            self._changed_handoffs.add(stash)
            return self._release((routed.site_id, routed.journey_id))
        self._observe(routed)
        key = (routed.site_id, routed.journey_id)
        queue = self._waiting.get(key)
        if queue is not None:
            queue.append(routed)
            self._changed_waiting.add(key)
            return [], []
        handled = self._handle(routed)
        if handled is None:
            self._waiting[key] = [routed]
            self._changed_waiting.add(key)
            self.journeys.held.add(key)
            return [], []
        return handled

    def _observe(self, routed: Routed) -> None:
        """What an `EVENT` or a `MERGE` tells of its events partition's progress. The partition's
        own `WATERMARK` comes only after its batch, and records of other partitions may come in
        between: without this, their watermarks could fire the timers of a journey whose events
        partition had not yet been heard of, before that journey's next event."""
        if routed.upstream is None:
            return
        newest = None if routed.watermark is None else routed.watermark + self._lateness_micros
        event = routed.event
        if event is not None and event.type is not EventType.ALIAS:
            at = maybe_micros(event.timestamp)
            assert at is not None
            newest = at if newest is None else max(newest, at)
        if newest is not None:
            self._progress(routed.upstream, newest)

    def _progress(self, upstream: int, newest: int) -> None:
        current = self._upstream.get(upstream)
        if current is None or newest > current:
            self._upstream[upstream] = newest
            self._changed_upstream.add(upstream)

    def _idle_without_events(self, upstream: int) -> None:
        if upstream not in self._upstream:
            self._upstream[upstream] = None
            self._changed_upstream.add(upstream)

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
            state = stashed.pop(0)
            if not stashed:
                del self._handoffs[stash]
            self._changed_handoffs.add(stash)
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
        queue = self._waiting.get(key)
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
        self._changed_waiting.add(key)
        if not queue:
            del self._waiting[key]
            self.journeys.held.discard(key)
            self.journeys.reschedule(*key)
            watermark = self.watermark
            if watermark is not None:
                outputs += self.journeys.fire_until(watermark)
        return outputs, routed

    # --- state ----------------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        records: list[tuple[bytes, bytes | None]] = [
            (state_key(b"j", key), None if row is None else orjson.dumps(row))
            for key, row in self.journeys.take_changes()
        ]
        for key in sorted(self._changed_waiting):
            queue = self._waiting.get(key)
            value = None if queue is None else orjson.dumps([_waiting_row(r) for r in queue])
            records.append((state_key(b"q", key), value))
        for handoff in sorted(self._changed_handoffs):
            stashed = self._handoffs.get(handoff)
            records.append(
                (
                    b"\x1f".join([b"h", *(part.encode() for part in handoff)]),
                    None if stashed is None else orjson.dumps(stashed),
                )  # fmt: skip
            )
        for upstream in sorted(self._changed_upstream):
            records.append((b"u\x1f%d" % upstream, orjson.dumps(self._upstream[upstream])))
        self._changed_waiting.clear()
        self._changed_handoffs.clear()
        self._changed_upstream.clear()
        return records

    def apply_change(self, key: bytes, value: bytes | None) -> None:
        kind, _, rest = key.partition(b"\x1f")
        loaded = None if value is None else orjson.loads(value)
        if kind == b"u":
            self._upstream[int(rest)] = loaded
            return
        parts = tuple(part.decode() for part in rest.split(b"\x1f"))
        if kind == b"j":
            self.journeys.apply_row((parts[0], parts[1]), loaded)
        elif kind == b"q":
            site, journey_id = parts
            if loaded is None:
                self._waiting.pop((site, journey_id), None)
            else:
                self._waiting[(site, journey_id)] = [_from_waiting_row(site, r) for r in loaded]
        elif kind == b"h":
            site, from_journey, into_journey = parts
            if loaded is None:
                self._handoffs.pop((site, from_journey, into_journey), None)
            else:
                self._handoffs[(site, from_journey, into_journey)] = loaded

    def finish_restore(self) -> None:
        self.journeys.held = set(self._waiting)
        self.journeys.rebuild_timers()


def _waiting_row(routed: Routed) -> list[Any]:
    event = None if routed.event is None else routed.event.to_bytes().decode()
    return [routed.kind.value, routed.journey_id, event, routed.other, routed.watermark]


def _from_waiting_row(site_id: str, row: list[Any]) -> Routed:
    kind, journey_id, event, other, watermark = row
    return Routed(
        RoutedKind(kind), site_id, journey_id,
        event=None if event is None else Event.from_bytes(event.encode()),
        other=other, watermark=watermark,
    )  # fmt: skip


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


# --- records ---------------------------------------------------------------------------------


def routed_headers(routed: Routed) -> list[tuple[str, bytes]]:
    """A routed record's Kafka headers: everything but the event or the handed-off state."""
    headers = [("kind", routed.kind.value.encode())]
    if routed.kind is not RoutedKind.WATERMARK:
        headers += [("site", routed.site_id.encode()), ("journey", routed.journey_id.encode())]
    if routed.other is not None:
        headers.append(("other", routed.other.encode()))
    if routed.watermark is not None:
        headers.append(("watermark", b"%d" % routed.watermark))
    if routed.upstream is not None:
        headers.append(("upstream", b"%d" % routed.upstream))
    return headers


def routed_value(routed: Routed) -> bytes:
    if routed.kind is RoutedKind.EVENT:
        assert routed.event is not None
        return routed.event.to_bytes()
    if routed.kind is RoutedKind.HANDOFF:
        return orjson.dumps(routed.state)
    return b""


def routed_from_record(value: bytes, headers: Iterable[tuple[str, bytes]]) -> Routed:
    fields = dict(headers)
    kind = RoutedKind(fields["kind"].decode())
    other, watermark = fields.get("other"), fields.get("watermark")
    upstream = fields.get("upstream")
    return Routed(
        kind,
        fields.get("site", b"").decode(),
        fields.get("journey", b"").decode(),
        event=Event.from_bytes(value) if kind is RoutedKind.EVENT else None,
        other=None if other is None else other.decode(),
        watermark=None if watermark is None else int(watermark),
        upstream=None if upstream is None else int(upstream),
        state=orjson.loads(value) if kind is RoutedKind.HANDOFF else None,
    )
