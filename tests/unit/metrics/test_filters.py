"""The filters' own rules: what they accept, and that no filter leaves every query as it was."""

from __future__ import annotations

import pytest

from services.metrics.filters import NO_FILTERS, Filters


def test_no_filter_adds_no_condition_and_no_parameter() -> None:
    assert not NO_FILTERS
    assert NO_FILTERS.parameters == {} and NO_FILTERS.given == {}
    for condition in (
        NO_FILTERS.on_sessions(),
        NO_FILTERS.on_transitions("t"),
        NO_FILTERS.on_events("e"),
        NO_FILTERS.on_signals("g"),
    ):
        assert condition == "1"


def test_a_filter_is_a_query_parameter_never_text_in_the_sql() -> None:
    hostile = "mobile' OR 1=1 --"
    filters = Filters(device=hostile, channel="email")
    assert filters.given == {"channel": "email", "device": hostile}
    assert filters.parameters == {"filter_channel": "email", "filter_device": hostile}
    for condition in (filters.on_sessions(), filters.on_events("e"), filters.on_signals("g")):
        assert hostile not in condition
        assert "{filter_device:String}" in condition and "{filter_channel:String}" in condition
    assert "{filter_segment:String}" not in filters.on_events("e")


def test_a_shops_own_segment_is_a_key_and_a_value() -> None:
    own = Filters(segment="ab_bucket:test")
    assert own.own_segment == ("ab_bucket", "test")
    assert own.parameters == {"filter_segment_key": "ab_bucket", "filter_segment_value": "test"}
    assert Filters(segment="new").own_segment is None
    assert Filters(segment="utm:a:b").own_segment == ("utm", "a:b")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"segment": "vip"}, "segment is new or returning, or a property or trait as key:value"),
        ({"segment": "plan:"}, "key:value"),
        ({"segment": "pl an:pro"}, "key:value"),
        ({"device": ""}, "device is 1 to 200 characters"),
        ({"channel": "x" * 201}, "channel is 1 to 200 characters"),
    ],
)
def test_a_filter_out_of_bounds_is_refused_with_its_name(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Filters(**fields)
