"""Event-time timers: when a quiet journey's session ends, it drops off, or its cart is
abandoned.

A journey has at most one timer queued at a time, its earliest deadline; the next is queued
when that one fires. Entries of deadlines that a later event moved stay in the heap until they
come up and are found stale (`TimerQueue.pop_due` asks whether each is still the journey's
next); a rebuild drops them when they pile up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class TimerKind(StrEnum):
    # The values order timers due at the same moment: the same after a restore as before.
    CART_ABANDONED = "cart"
    DROPPED_OFF = "dropoff"
    SESSION_ENDED = "session"


class Timer(NamedTuple):
    """A tuple, so the heap compares timers in C: (deadline, site, journey, kind) is also the
    order in which timers due together fire."""

    deadline: datetime
    site_id: str
    journey_id: str
    kind: TimerKind


class TimerQueue:
    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[Timer] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, timer)

    def rebuild(self, timers: Iterable[Timer | None]) -> None:
        self._heap = [timer for timer in timers if timer is not None]
        heapq.heapify(self._heap)

    def pop_due(self, watermark: datetime, is_current: Callable[[Timer], bool]) -> Timer | None:
        """The earliest timer due by `watermark` that `is_current` still holds to be its
        journey's next; stale ones on the way are dropped."""
        while self._heap and self._heap[0].deadline <= watermark:
            timer = heapq.heappop(self._heap)
            if is_current(timer):
                return timer
        return None
