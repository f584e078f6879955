"""Event time: how far a stream has got, and what may still arrive.

A stream's clock is its newest event time; its watermark lies the allowed lateness behind, and
timers fire when the watermark passes them. The clock only moves forward. A stream that has
never had an event has no clock (`newest` None): its first events may be history replayed into
a new pipeline, which a clock at the wall clock would find late. Both stages keep their clocks
as this type: the identity stage one per events partition, the journey stage one per events
partition it hears from, and its watermark is that of the slowest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts.timecodec import maybe_from_micros, maybe_micros


class EventClock:
    __slots__ = ("_lateness", "newest")

    def __init__(self, lateness: timedelta, newest: datetime | None = None) -> None:
        self._lateness = lateness
        self.newest = newest

    @property
    def watermark(self) -> datetime | None:
        return None if self.newest is None else self.newest - self._lateness

    def observe(self, at: datetime) -> bool:
        """An event (or the wall clock, when nothing is left to read) at `at`; True when the
        clock moved."""
        if self.newest is None or at > self.newest:
            self.newest = at
            return True
        return False

    @property
    def micros(self) -> int | None:
        """The newest event time in microseconds since the epoch, as changelogs and the
        journeys topic carry it."""
        return maybe_micros(self.newest)

    def set_micros(self, micros: int | None) -> None:
        self.newest = maybe_from_micros(micros)
