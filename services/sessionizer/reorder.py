"""Events back in time order before they reach the journeys: a short hold per stream. Pure.

Within one page load a browser's requests overtake each other: a page view held up by its CORS
preflight reaches the collector after the product view that followed it, and a shop's server
sends the order while the browser's checkout step is still in flight. Applied as they come,
those would give the journey a different session id, landing page and channel, a fall-back
transition from consideration to awareness, and "awareness" as the current phase of a customer
who has just bought.

So each stream (an events partition in the Kafka sessionizer, the whole stream in embedded
mode) holds its events for `window` of event time and lets them go in timestamp order, ties in
the order they came. An event goes once the stream has seen an event `window` newer than it,
or once the wall clock is that far past it (`pass_time`, at the stream's live end only). An
event that arrives less than `window` behind the newest event seen is therefore put back in
its place; one that comes later goes at once, and the journey rules for late events take it
from there. A window of zero lets every event through as it comes.

The hold is a transformation in front of the rest: everything after it sees one ordered stream,
so the Kafka stages and the embedded engine stay the same function of the same stream. What is
held is state like any other: it goes to the changelog (`take_changes`), keyed by its place in
the hold, and comes back on a restore.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from contracts.events import Event
from contracts.timecodec import maybe_from_micros, to_micros

# (event time in microseconds, place of arrival, event): heap order is release order
_Held = tuple[int, int, Event]


class ReorderBuffer:
    __slots__ = ("_changed", "_heap", "_loaded", "_newest", "_next_place", "_stored", "window")

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._heap: list[_Held] = []
        self._newest: int | None = None  # microseconds: the newest event time seen
        self._next_place = 0
        self._changed: set[int] = set()  # places added or released since `take_changes`
        self._stored: set[int] = set()  # places the changelog holds a value for
        self._loaded: dict[int, Event] = {}  # read back from the changelog, until restored

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def oldest(self) -> datetime | None:
        """The time of the oldest event held: once the wall clock is `window` past it, it is
        due (`pass_time`)."""
        return maybe_from_micros(self._heap[0][0]) if self._heap else None

    def add(self, event: Event) -> list[Event]:
        """Hold `event`; the events that are due now, in order (it may be one of them)."""
        at = to_micros(event.timestamp)
        place = self._next_place
        self._next_place += 1
        heapq.heappush(self._heap, (at, place, event))
        self._changed.add(place)
        if self._newest is None or at > self._newest:
            self._newest = at
        return list(self._due(self._newest))

    def pass_time(self, now: datetime) -> list[Event]:
        """No event came until `now` (the wall clock, with nothing left to read): the events
        that are `window` older than it go, in order. The hold's clock stays with the events:
        what it holds and its clock are then the same whenever the wall clock looked."""
        if self._newest is None:
            return []
        return list(self._due(max(self._newest, to_micros(now))))

    def drain(self) -> list[Event]:
        """Every event held, in order: the end of a finite stream."""
        released = []
        while self._heap:
            released.append(self._release())
        return released

    def drop(self, site_id: str, ids: Iterable[str]) -> int:
        """Forget the held events of these ids of a site (an erasure); how many went."""
        ids = set(ids)
        kept: list[_Held] = []
        dropped = 0
        for held in self._heap:
            event = held[2]
            if event.site_id == site_id and ids & {
                event.anonymous_id,
                event.user_id,
                event.previous_id,
            }:
                self._changed.add(held[1])
                dropped += 1
            else:
                kept.append(held)
        if dropped:
            heapq.heapify(kept)
            self._heap = kept
        return dropped

    def _due(self, clock: int) -> Iterator[Event]:
        until = clock - int(self.window / timedelta(microseconds=1))
        while self._heap and self._heap[0][0] <= until:
            yield self._release()

    def _release(self) -> Event:
        _, place, event = heapq.heappop(self._heap)
        self._changed.add(place)
        return event

    # --- state ----------------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[int, Event | None]]:
        """Places added or released since the last call, with the event still held there
        (None: released). A place both added and released in between left nothing to store."""
        changed, self._changed = self._changed, set()
        holding = {held[1]: held[2] for held in self._heap if held[1] in changed}
        changes: list[tuple[int, Event | None]] = []
        for place in sorted(changed):
            event = holding.get(place)
            if event is not None:
                self._stored.add(place)
                changes.append((place, event))
            elif place in self._stored:
                self._stored.discard(place)
                changes.append((place, None))
        return changes

    def load(self, place: int, event: Event | None) -> None:
        """A held event read back from the changelog (None: released since); the changelog
        is read in order, so a place's last record is what it holds. `finish_restore` then
        holds them."""
        if event is None:
            self._loaded.pop(place, None)
        else:
            self._loaded[place] = event

    def finish_restore(self) -> None:
        loaded, self._loaded = self._loaded, {}
        self._stored = set(loaded)
        self._heap = [(to_micros(event.timestamp), place, event) for place, event in loaded.items()]
        heapq.heapify(self._heap)
        self._next_place = max(loaded, default=-1) + 1

    @property
    def micros(self) -> int | None:
        """The hold's clock, in microseconds: stored beside the events held, since what is due
        depends on it (a restore must release exactly what the run before it would have)."""
        return self._newest

    def set_micros(self, micros: int | None) -> None:
        self._newest = micros

    def export_state(self) -> dict[str, object]:
        return {
            "newest": self._newest,
            "held": [[place, event.to_bytes().decode()] for _, place, event in sorted(self._heap)],
        }

    def restore_state(self, state: dict[str, object]) -> None:
        held = state.get("held") or []
        assert isinstance(held, list)
        for place, encoded in held:
            self.load(place, Event.from_bytes(encoded.encode()))
        self.finish_restore()
        newest = state.get("newest")
        self.set_micros(newest if isinstance(newest, int) else None)

    def snapshot(self) -> dict[str, object]:
        """What a restore from the changelog must rebuild: the events held, in release order."""
        return {"held": [(at, place, event.event_id) for at, place, event in sorted(self._heap)]}
