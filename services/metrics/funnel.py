"""Funnel arithmetic, apart from SQL so its rules are unit-tested on their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PhaseReach:
    phase: str
    journeys: int


def phase_reach(phases: Sequence[str], journeys_by_furthest: Mapping[int, int]) -> list[PhaseReach]:
    """Journeys that reached each phase, given how many got furthest to each one.

    `journeys_by_furthest` maps a phase's 1-based position to the journeys whose furthest phase
    it is (0, a phase the model no longer has, is ignored). A journey that got to purchase also
    reached awareness and consideration, even if it skipped them (a cheap product bought straight
    from an ad), so each phase counts every journey that got at least that far.
    """
    reach: list[PhaseReach] = []
    running = 0
    for position in range(len(phases), 0, -1):
        running += journeys_by_furthest.get(position, 0)
        reach.append(PhaseReach(phases[position - 1], running))
    reach.reverse()
    return reach
