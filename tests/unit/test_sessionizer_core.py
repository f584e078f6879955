from __future__ import annotations

from datetime import timedelta

import orjson

from klantreis.journeys import PhaseTransition, SessionSnapshot
from klantreis.phases import DEFAULT_PHASE_MODEL
from services.sessionizer.core import Sessionizer, SessionizerOutput
from tests.unit.factories import make_event

MIN = timedelta(minutes=1)


def new() -> Sessionizer:
    return Sessionizer(DEFAULT_PHASE_MODEL, timedelta(minutes=30))


def transitions(outputs: list[SessionizerOutput]) -> list[tuple[str | None, str]]:
    return [(o.from_phase, o.to_phase) for o in outputs if isinstance(o, PhaseTransition)]


def snapshot(outputs: list[SessionizerOutput]) -> SessionSnapshot:
    (only,) = [o for o in outputs if isinstance(o, SessionSnapshot)]
    return only


def test_a_first_page_view_enters_the_journey_in_awareness() -> None:
    outputs = new().process(make_event("page"))
    assert transitions(outputs) == [(None, "awareness")]
    assert snapshot(outputs).event_count == 1


def test_events_move_the_journey_through_the_phases() -> None:
    s = new()
    s.process(make_event("page"))
    assert transitions(s.process(make_event("track", "Product Viewed", at=MIN))) == [
        ("awareness", "consideration")
    ]
    assert transitions(s.process(make_event("track", "Order Completed", at=2 * MIN))) == [
        ("consideration", "purchase")
    ]


def test_an_unmapped_event_or_a_page_view_does_not_move_the_journey() -> None:
    s = new()
    s.process(make_event("track", "Product Viewed"))
    assert transitions(s.process(make_event("page", at=MIN))) == []
    assert transitions(s.process(make_event("track", "Newsletter Opened", at=2 * MIN))) == []


def test_a_journey_can_start_past_awareness_and_fall_back() -> None:
    s = new()
    # Straight from an ad to the cart: the journey begins in purchase.
    assert transitions(s.process(make_event("track", "Product Added"))) == [(None, "purchase")]
    outputs = s.process(make_event("track", "Product Viewed", at=MIN))
    (back,) = [o for o in outputs if isinstance(o, PhaseTransition)]
    assert (back.from_phase, back.to_phase) == ("purchase", "consideration")
    assert back.furthest_phase == "purchase"  # falling back never lowers the furthest phase


def test_a_second_order_moves_a_customer_into_retention_and_a_review_into_advocacy() -> None:
    s = new()
    s.process(make_event("track", "Order Completed"))
    assert transitions(s.process(make_event("track", "Order Completed", at=timedelta(days=20))))[
        0
    ] == ("purchase", "retention")
    outputs = s.process(make_event("track", "Product Reviewed", at=timedelta(days=21)))
    assert transitions(outputs) == [("retention", "advocacy")]


def test_thirty_minutes_of_silence_starts_a_new_session() -> None:
    s = new()
    first = snapshot(s.process(make_event("page")))
    same = snapshot(s.process(make_event("page", at=29 * MIN)))
    later = snapshot(s.process(make_event("page", at=29 * MIN + 31 * MIN)))
    assert first.session_id == same.session_id
    assert same.event_count == 2
    assert later.session_id != same.session_id
    assert later.event_count == 1


def test_the_session_gap_is_measured_from_the_last_event_not_the_start() -> None:
    s = new()
    ids = {snapshot(s.process(make_event("page", at=k * 20 * MIN))).session_id for k in range(6)}
    assert len(ids) == 1  # two hours of activity, never 30 minutes apart


def test_a_late_event_joins_the_session_without_moving_its_end_back() -> None:
    s = new()
    s.process(make_event("page", at=10 * MIN))
    late = snapshot(s.process(make_event("page", at=5 * MIN)))
    assert late.last_event_at == make_event("page", at=10 * MIN).timestamp
    assert late.event_count == 2


def test_visitors_are_kept_apart() -> None:
    s = new()
    a = snapshot(s.process(make_event("page", visitor="a")))
    b = snapshot(s.process(make_event("page", visitor="b")))
    assert a.session_id != b.session_id
    assert s.active_journeys == 2


def test_landing_and_exit_pages_follow_page_views() -> None:
    s = new()
    s.process(make_event("page", url="https://shop.example/"))
    s.process(make_event("track", "Product Viewed", at=MIN))
    last = snapshot(s.process(make_event("page", at=2 * MIN, url="https://shop.example/cart")))
    assert (last.landing_url, last.exit_url, last.page_views) == (
        "https://shop.example/",
        "https://shop.example/cart",
        2,
    )


def test_a_replay_gives_identical_outputs() -> None:
    events = [
        make_event("page"),
        make_event("track", "Product Viewed", at=MIN),
        make_event("page", at=90 * MIN),
        make_event("track", "Order Completed", at=91 * MIN),
    ]
    run_a, run_b = new(), new()
    outputs_a = [o.to_bytes() for e in events for o in run_a.process(e)]
    outputs_b = [o.to_bytes() for e in events for o in run_b.process(e)]
    assert len(outputs_a) == 4 + 3  # a snapshot per event, three transitions
    assert outputs_a == outputs_b


def test_exported_state_restores_to_the_same_behaviour() -> None:
    events = [make_event("page"), make_event("track", "Product Viewed", at=MIN)]
    tail = [make_event("page", at=10 * MIN), make_event("track", "Order Completed", at=11 * MIN)]
    uninterrupted = new()
    for e in events:
        uninterrupted.process(e)
    restarted = new()
    for e in events:
        restarted.process(e)
    resumed = new()
    resumed.restore_state(orjson.loads(orjson.dumps(restarted.export_state())))
    assert [o.to_bytes() for e in tail for o in resumed.process(e)] == [
        o.to_bytes() for e in tail for o in uninterrupted.process(e)
    ]
