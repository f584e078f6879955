"""`klantreis report`'s table: what a person reads in a terminal, from the figure's rows."""

from __future__ import annotations

from klantreis.report import REMOTE, figure_of, table


def test_a_list_figure_is_a_column_per_field_with_numbers_to_the_right() -> None:
    rows = [
        {"phase": "awareness", "journeys": 1200, "rate": 1.0},
        {"phase": "purchase", "journeys": 37, "rate": 0.0308},
    ]
    header, rule, first, second = table(rows).splitlines()
    assert header.split() == ["phase", "journeys", "rate"]
    assert len(rule) == len(first) == len(second)
    assert first.split() == ["awareness", "1200", "1.00"]
    assert second.split() == ["purchase", "37", "0.0308"]
    assert second.index("37") + 2 == first.index("1200") + 4  # right-aligned


def test_nested_counts_become_their_own_columns_and_missing_values_a_dash() -> None:
    rows = [
        {"day": "2026-11-01", "journeys_by_phase": {"awareness": 5, "purchase": 1}, "rate": None},
        {"day": "2026-11-02", "journeys_by_phase": {"awareness": 3, "purchase": 0}, "rate": 0.5},
    ]
    header, _, first, _ = table(rows).splitlines()
    assert header.split() == [
        "day", "journeys_by_phase.awareness", "journeys_by_phase.purchase", "rate"
    ]  # fmt: skip
    assert first.split() == ["2026-11-01", "5", "1", "-"]


def test_a_figure_of_named_values_is_two_columns_and_an_empty_one_says_so() -> None:
    header, _, *lines = table({"orders": 3, "revenue": 129.5, "conversion_rate": 0.25}).splitlines()
    assert header.split() == ["figure", "value"]
    assert [line.split() for line in lines] == [
        ["orders", "3"], ["revenue", "129.50"], ["conversion_rate", "0.2500"]
    ]  # fmt: skip
    assert table([]) == "(no rows)"


def test_a_running_instance_gives_the_figure_without_the_responses_envelope() -> None:
    response = {"site": "demo", "date_from": None, "phases": [{"phase": "awareness"}]}
    assert figure_of("funnel", response) == [{"phase": "awareness"}]
    metrics = {"site": "demo", "date_from": "2026-11-01", "orders": 2, "revenue": 10.0}
    assert figure_of("metrics", metrics) == {"orders": 2, "revenue": 10.0}
    assert REMOTE["channels"][1] == {"by": "channel"}
