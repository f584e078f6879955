"""Funnel arithmetic, apart from SQL so its rules are unit-tested on their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class PhaseReach:
    phase: str
    journeys: int
    # Of the journeys that reached the phase before, the share that got this far: the
    # conversion between the two, whose complement is the drop-off between them. None for the
    # first phase, and when no journey reached the one before.
    from_previous: float | None = None


def from_previous(counts: Sequence[int]) -> list[float | None]:
    """Per phase of a funnel's counts, the share of the previous phase's that got this far."""
    return [
        None if i == 0 or not counts[i - 1] else counts[i] / counts[i - 1]
        for i in range(len(counts))
    ]


def reach_of(phases: Sequence[str], counts: Sequence[int]) -> list[PhaseReach]:
    """The funnel of `counts` (journeys that got at least as far as each phase)."""
    return [
        PhaseReach(phase, n, share)
        for phase, n, share in zip(phases, counts, from_previous(counts), strict=True)
    ]


def phase_reach(phases: Sequence[str], journeys_by_furthest: Mapping[int, int]) -> list[PhaseReach]:
    """Journeys that reached each phase, given how many got furthest to each one.

    `journeys_by_furthest` maps a phase's 1-based position to the journeys whose furthest phase
    it is (0, a phase the model no longer has, is ignored). A journey that got to purchase also
    reached awareness and consideration, even if it skipped them (a cheap product bought straight
    from an ad), so each phase counts every journey that got at least that far.
    """
    counts: list[int] = []
    running = 0
    for position in range(len(phases), 0, -1):
        running += journeys_by_furthest.get(position, 0)
        counts.append(running)
    counts.reverse()
    return reach_of(phases, counts)


class FunnelOrder(StrEnum):
    """How a step funnel's steps must follow each other (PostHog's and Mixpanel's three modes)."""

    ORDERED = "ordered"  # each step after the previous one; other events may come between
    STRICT = "strict"  # each step directly after the previous one: nothing else between
    ANY = "any"  # every step, in whatever order, within the window


@dataclass(frozen=True)
class FunnelStep:
    """One step: a track event by name, `page` for any page view, or `page:/path` for views of
    a path and the paths under it."""

    spec: str

    @property
    def is_page(self) -> bool:
        return self.spec == "page" or self.spec.startswith("page:")

    @property
    def path(self) -> str | None:
        return self.spec.removeprefix("page:") if self.spec.startswith("page:") else None

    @classmethod
    def parse(cls, text: str) -> FunnelStep:
        spec = text.strip()
        if not spec:
            raise ValueError("a step must name an event, `page` or `page:/path`")
        if spec.startswith("page:") and not spec.removeprefix("page:").startswith("/"):
            raise ValueError(f"{text!r}: a page step's path starts with '/'")
        return cls(spec)


MAX_FUNNEL_STEPS = 20


def check_steps(steps: Sequence[FunnelStep], order: FunnelOrder) -> None:
    """Refuse funnels the query cannot answer meaningfully, with a message for the caller."""
    if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
        raise ValueError(f"a funnel has 2 to {MAX_FUNNEL_STEPS} steps, got {len(steps)}")
    if order is FunnelOrder.ANY and len(set(steps)) != len(steps):
        raise ValueError("an any-order funnel needs distinct steps: a repeat would count once")


@dataclass(frozen=True)
class StepReach:
    step: str
    people: int
    conversion_from_previous: float
    conversion_from_first: float


def step_reach(steps: Sequence[FunnelStep], people_by_level: Mapping[int, int]) -> list[StepReach]:
    """People who reached each step, given how many got furthest to each level (1 = the first
    step only); everyone who got to step k also passed every step before it."""
    reached = [r.journeys for r in phase_reach([s.spec for s in steps], people_by_level)]
    first = reached[0]
    return [
        StepReach(
            step=step.spec,
            people=count,
            conversion_from_previous=(
                1.0 if index == 0 else (count / reached[index - 1] if reached[index - 1] else 0.0)
            ),
            conversion_from_first=count / first if first else 0.0,
        )
        for index, (step, count) in enumerate(zip(steps, reached, strict=True))
    ]
