from __future__ import annotations

from services.metrics.funnel import PhaseReach, phase_reach

PHASES = ("awareness", "consideration", "purchase", "retention", "advocacy")


def test_each_phase_counts_every_journey_that_got_at_least_that_far() -> None:
    # 5 journeys stopped in awareness, 3 in consideration, 2 bought, 1 became an advocate.
    reach = phase_reach(PHASES, {1: 5, 2: 3, 3: 2, 5: 1})
    assert reach == [
        PhaseReach("awareness", 11),
        PhaseReach("consideration", 6),
        PhaseReach("purchase", 3),
        PhaseReach("retention", 1),
        PhaseReach("advocacy", 1),
    ]


def test_phases_no_longer_in_the_model_are_ignored() -> None:
    assert phase_reach(PHASES, {0: 7}) == [PhaseReach(p, 0) for p in PHASES]


def test_an_empty_site_has_an_all_zero_funnel() -> None:
    assert [r.journeys for r in phase_reach(PHASES, {})] == [0] * 5
