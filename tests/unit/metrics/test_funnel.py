from __future__ import annotations

import pytest

from services.metrics.funnel import (
    FunnelOrder,
    FunnelStep,
    PhaseReach,
    check_steps,
    from_previous,
    phase_reach,
    step_reach,
)

PHASES = ("awareness", "consideration", "purchase", "retention", "advocacy")


def test_each_phase_counts_every_journey_that_got_at_least_that_far() -> None:
    # 5 journeys stopped in awareness, 3 in consideration, 2 bought, 1 became an advocate.
    reach = phase_reach(PHASES, {1: 5, 2: 3, 3: 2, 5: 1})
    assert reach == [
        PhaseReach("awareness", 11),
        PhaseReach("consideration", 6, 6 / 11),
        PhaseReach("purchase", 3, 3 / 6),
        PhaseReach("retention", 1, 1 / 3),
        PhaseReach("advocacy", 1, 1.0),
    ]


def test_conversion_between_phases_is_none_where_nobody_reached_the_phase_before() -> None:
    assert from_previous([4, 0, 0, 2]) == [None, 0.0, None, None]


def test_phases_no_longer_in_the_model_are_ignored() -> None:
    assert phase_reach(PHASES, {0: 7}) == [PhaseReach(p, 0) for p in PHASES]


def test_an_empty_site_has_an_all_zero_funnel() -> None:
    assert [r.journeys for r in phase_reach(PHASES, {})] == [0] * 5


def test_step_reach_counts_everyone_who_got_at_least_that_far_with_rates() -> None:
    steps = [FunnelStep.parse(s) for s in ("Product Viewed", "page:/checkout", "Order Completed")]
    reach = step_reach(steps, {1: 5, 2: 3, 3: 2})
    assert [(r.step, r.people) for r in reach] == [
        ("Product Viewed", 10),
        ("page:/checkout", 5),
        ("Order Completed", 2),
    ]
    assert [r.conversion_from_previous for r in reach] == [1.0, 0.5, 0.4]
    assert reach[2].conversion_from_first == 0.2


def test_an_empty_step_funnel_has_zero_rates_not_a_division_error() -> None:
    steps = [FunnelStep.parse("a"), FunnelStep.parse("b")]
    assert [(r.people, r.conversion_from_first) for r in step_reach(steps, {})] == [(0, 0.0)] * 2


def test_page_steps_name_a_path() -> None:
    assert FunnelStep.parse("page:/checkout").path == "/checkout"
    assert FunnelStep.parse("page").is_page and FunnelStep.parse("page").path is None
    assert not FunnelStep.parse("Order Completed").is_page
    with pytest.raises(ValueError, match="starts with '/'"):
        FunnelStep.parse("page:checkout")


def test_funnels_need_two_to_twenty_steps_and_any_order_needs_distinct_ones() -> None:
    a, b = FunnelStep.parse("a"), FunnelStep.parse("b")
    check_steps([a, b], FunnelOrder.ANY)
    with pytest.raises(ValueError, match="2 to 20"):
        check_steps([a], FunnelOrder.ORDERED)
    with pytest.raises(ValueError, match="distinct"):
        check_steps([a, a], FunnelOrder.ANY)
    check_steps([a, a], FunnelOrder.STRICT)  # page, page, order is a fine strict funnel
