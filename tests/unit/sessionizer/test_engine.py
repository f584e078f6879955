from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import orjson

from contracts.events import DeadLetter, DeadLetterReason, Event
from contracts.journeys import (
    IdentityLink,
    LinkKind,
    PhaseTransition,
    SessionSnapshot,
    Signal,
    SignalKind,
    TransitionKind,
)
from contracts.phases import DEFAULT_PHASE_MODEL
from contracts.records import SessionizerOutput
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from tests.support.factories import make_event

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def engine() -> JourneyEngine:
    return JourneyEngine(JourneyRules(DEFAULT_PHASE_MODEL))


def run(events: Sequence[Event], e: JourneyEngine | None = None) -> list[SessionizerOutput]:
    e = e or engine()
    return [output for event in events for output in e.process(event)]


def moves(outputs: Sequence[SessionizerOutput]) -> list[tuple[str, str | None, str]]:
    return [
        (o.kind.value, o.from_phase, o.to_phase) for o in outputs if isinstance(o, PhaseTransition)
    ]


def signals(outputs: Sequence[SessionizerOutput]) -> list[str]:
    return [o.kind.value for o in outputs if isinstance(o, Signal)]


def snapshots(outputs: Sequence[SessionizerOutput]) -> list[SessionSnapshot]:
    return [o for o in outputs if isinstance(o, SessionSnapshot)]


# --- phases -------------------------------------------------------------------------------------


def test_a_first_page_view_enters_the_journey_in_awareness() -> None:
    assert moves(run([make_event("page")])) == [("entered", None, "awareness")]


def test_events_move_the_journey_forward_through_the_phases() -> None:
    outputs = run(
        [
            make_event("page"),
            make_event("track", "Product Viewed", at=MIN),
            make_event("track", "Order Completed", at=2 * MIN),
        ]
    )
    assert moves(outputs) == [
        ("entered", None, "awareness"),
        ("advanced", "awareness", "consideration"),
        ("advanced", "consideration", "purchase"),
    ]
    assert signals(outputs).count("phase_reached") == 3


def test_page_views_and_unknown_events_leave_the_journey_where_it_is() -> None:
    outputs = run(
        [
            make_event("track", "Product Viewed"),
            make_event("page", at=MIN, path="/about"),
            make_event("track", "Newsletter Opened", at=2 * MIN),
        ]
    )
    assert moves(outputs) == [("entered", None, "consideration")]


def test_a_page_rule_matches_on_the_path() -> None:
    outputs = run([make_event("page", path="/"), make_event("page", at=MIN, path="/reviews/tv")])
    assert moves(outputs)[-1] == ("advanced", "awareness", "consideration")


def test_journeys_are_not_linear_they_fall_back_without_losing_their_furthest_phase() -> None:
    outputs = run(
        [
            make_event("track", "Product Added"),  # straight from an ad into the cart
            make_event("track", "Product Viewed", at=MIN),  # back to comparing
        ]
    )
    back = [o for o in outputs if isinstance(o, PhaseTransition)][-1]
    assert (back.kind, back.from_phase, back.to_phase) == (
        TransitionKind.FELL_BACK,
        "purchase",
        "consideration",
    )
    assert back.furthest_phase == "purchase"
    assert back.seconds_in_previous_phase == 60


def test_a_repeat_order_moves_into_retention_and_a_review_into_advocacy() -> None:
    outputs = run(
        [
            make_event("track", "Order Completed"),
            make_event("track", "Order Completed", at=20 * DAY),
            make_event("track", "Product Reviewed", at=21 * DAY),
        ]
    )
    # 20 days without an order is past the purchase phase's 2-day drop-off time.
    assert moves(outputs)[1:] == [
        ("dropped_off", "purchase", "purchase"),
        ("returned", "purchase", "purchase"),
        ("advanced", "purchase", "retention"),
        ("advanced", "retention", "advocacy"),
    ]
    assert "repeat_purchase" in signals(outputs)


def test_a_transition_names_the_channel_and_touchpoint_that_moved_the_journey() -> None:
    outputs = run(
        [
            make_event("page", path="/blog/choosing-a-tv", channel="organic_search"),
            make_event("track", "Product Viewed", at=MIN, channel="paid_social"),
        ]
    )
    first, second = [o for o in outputs if isinstance(o, PhaseTransition)]
    assert (first.channel, first.touchpoint) == ("organic_search", "blog")
    assert (second.channel, second.touchpoint) == ("paid_social", "ad")


def test_an_order_sent_by_the_shops_server_is_credited_to_the_visits_channel() -> None:
    outputs = run(
        [
            make_event("page", path="/p/tv", channel="email"),
            make_event("track", "Product Added", at=MIN, channel="internal"),
            make_event("track", "Order Completed", at=2 * MIN, channel="direct"),
        ]
    )
    moved = [o for o in outputs if isinstance(o, PhaseTransition)]
    assert [(t.to_phase, t.channel) for t in moved] == [
        ("awareness", "email"),
        ("purchase", "email"),
    ]


# --- sessions -----------------------------------------------------------------------------------


def test_thirty_minutes_of_silence_starts_a_new_session() -> None:
    outputs = run(
        [make_event("page"), make_event("page", at=29 * MIN), make_event("page", at=61 * MIN)]
    )
    ids = [s.session_id for s in snapshots(outputs)]
    first, second = ids[0], ids[-1]
    assert first != second
    closed = [s for s in snapshots(outputs) if s.closed]
    assert [(s.session_id, s.event_count) for s in closed] == [(first, 2)]


def test_the_gap_is_measured_from_the_last_event_not_the_start() -> None:
    outputs = run([make_event("page", at=k * 20 * MIN) for k in range(6)])
    assert len({s.session_id for s in snapshots(outputs)}) == 1


def test_a_session_is_not_split_at_midnight_or_on_a_new_campaign() -> None:
    late_evening = timedelta(hours=14, minutes=50)  # 23:50 on T0's day
    outputs = run(
        [
            make_event("page", at=late_evening, channel="organic_search"),
            make_event("page", at=late_evening + 20 * MIN, channel="paid_search"),
        ]
    )
    assert len({s.session_id for s in snapshots(outputs)}) == 1


def test_a_session_ends_at_its_maximum_length() -> None:
    rules = JourneyRules(DEFAULT_PHASE_MODEL, max_session=timedelta(hours=2))
    outputs = run([make_event("page", at=k * 20 * MIN) for k in range(8)], JourneyEngine(rules))
    assert len({s.session_id for s in snapshots(outputs)}) == 2


def test_engagement_follows_ga4_ten_seconds_two_pages_or_a_conversion() -> None:
    def engaged(events: list[Event]) -> bool:
        return snapshots(run(events))[-1].engaged

    assert not engaged([make_event("page")])
    assert engaged([make_event("page"), make_event("page", at=timedelta(seconds=3))])
    assert engaged(
        [make_event("track", "Product Viewed"), make_event("track", "X", at=timedelta(seconds=12))]
    )
    assert engaged([make_event("track", "Order Completed")])


def test_landing_and_exit_paths_follow_page_views() -> None:
    outputs = run(
        [
            make_event("page", path="/"),
            make_event("track", "Product Viewed", at=MIN),
            make_event("page", at=2 * MIN, path="/cart"),
            make_event("page", visitor="someone-else", at=HOUR),  # closes the first session
        ]
    )
    (last,) = [s for s in snapshots(outputs) if s.closed]
    assert (last.landing_path, last.exit_path, last.page_views) == ("/", "/cart", 2)


def test_a_late_event_within_the_allowed_lateness_joins_its_session() -> None:
    outputs = run([make_event("page", at=10 * MIN), make_event("page", at=5 * MIN)])
    sessions = {s.session_id for s in snapshots(outputs)}
    assert len(sessions) == 1
    e = engine()
    run([make_event("page", at=10 * MIN), make_event("page", at=5 * MIN)], e)
    journey = e.journeys.journey("shop", "anon-1")
    assert journey is not None and journey.session.events == 2
    assert journey.session.started_at == make_event(at=5 * MIN).timestamp


def test_an_event_later_than_allowed_is_routed_out_and_counted_not_folded_in() -> None:
    e = engine()
    outputs = run([make_event("page", at=2 * HOUR), make_event("page", at=HOUR)], e)
    (late,) = [o for o in outputs if isinstance(o, DeadLetter)]
    assert late.reason is DeadLetterReason.LATE_EVENT
    assert e.journeys.late_events == 1
    journey = e.journeys.journey("shop", "anon-1")
    assert journey is not None and journey.session.events == 1


def test_a_new_visitor_behind_the_streams_clock_is_routed_out_not_split_into_bounces() -> None:
    """History sent after live traffic: each event's session would have ended before the next
    came. A new journey within the allowed lateness still begins."""
    e = engine()
    live = make_event("page", visitor="live", at=2 * HOUR)
    history = [make_event("page", visitor="past", at=HOUR + n * MIN) for n in range(3)]
    recent = make_event("page", visitor="recent", at=2 * HOUR - 5 * MIN)
    outputs = run([live, *history, recent], e)
    late = [o for o in outputs if isinstance(o, DeadLetter)]
    assert [letter.reason for letter in late] == [DeadLetterReason.LATE_EVENT] * 3
    assert (
        late[0].message
        == "3600s older than the newest event of its stream; allowed lateness is 600s"
    )
    assert e.journeys.late_events == 3
    assert e.journeys.journey("shop", "past") is None
    assert {s.journey_id for s in snapshots(outputs)} == {"live", "recent"}


def test_duplicate_event_ids_are_dropped_and_counted() -> None:
    e = engine()
    event = make_event("track", "Product Viewed")
    assert run([event], e)
    assert run([event], e) == []
    assert e.identities.duplicates == 1


def test_visitors_are_kept_apart() -> None:
    e = engine()
    run([make_event("page", visitor="a"), make_event("page", visitor="b")], e)
    assert len(e.journeys) == 2


# --- timers -------------------------------------------------------------------------------------


def test_a_session_closes_when_event_time_passes_its_timeout() -> None:
    outputs = run([make_event("page", visitor="a"), make_event("page", visitor="b", at=45 * MIN)])
    closed = [s for s in snapshots(outputs) if s.closed]
    assert [s.journey_id for s in closed] == ["a"]


def test_timers_wait_for_the_allowed_lateness() -> None:
    # 35 minutes later the session's deadline (30 min) has passed, but not by the lateness (10).
    outputs = run([make_event("page", visitor="a"), make_event("page", visitor="b", at=35 * MIN)])
    assert not [s for s in snapshots(outputs) if s.closed]


def test_a_quiet_journey_drops_off_in_its_phase_and_returns() -> None:
    outputs = run(
        [
            make_event("track", "Product Viewed", visitor="a"),
            make_event("page", visitor="b", at=15 * DAY),  # time passes: a's 14 days run out
            make_event("page", visitor="a", at=16 * DAY),
        ]
    )
    dropped = [o for o in outputs if isinstance(o, PhaseTransition) and o.journey_id == "a"]
    assert [(t.kind.value, t.to_phase) for t in dropped] == [
        ("entered", "consideration"),
        ("dropped_off", "consideration"),
        ("returned", "consideration"),
    ]
    assert dropped[1].at == make_event(at=14 * DAY).timestamp
    assert [s.kind.value for s in outputs if isinstance(s, Signal) and s.journey_id == "a"][1:] == [
        "dropped_off",
        "returned",
    ]


def test_a_lone_visitor_who_comes_back_after_the_drop_off_time_dropped_off_first() -> None:
    """No other traffic moves the partition's clock in between: the visitor's own next event
    shows that the drop-off time ran out, so the drop-off still fires, at the moment it ran out,
    and before the return. Without this, a small shop's drop-offs would depend on whether some
    other visitor happened to come by."""
    outputs = run(
        [
            make_event("track", "Product Viewed", visitor="a"),
            make_event("page", visitor="a", at=16 * DAY),
        ]
    )
    assert moves(outputs) == [
        ("entered", None, "consideration"),
        ("dropped_off", "consideration", "consideration"),
        ("returned", "consideration", "consideration"),
    ]
    dropped = [o for o in outputs if isinstance(o, PhaseTransition)][1]
    assert dropped.at == make_event(at=14 * DAY).timestamp
    assert signals(outputs) == ["phase_reached", "dropped_off", "returned"]
    # The first visit's session ended 30 minutes after its event, before the drop-off.
    closed = [s for s in snapshots(outputs) if s.closed]
    assert len(closed) == 1 and closed[0].last_event_at == make_event().timestamp


def test_an_order_after_the_abandon_time_still_leaves_the_abandoned_cart() -> None:
    outputs = run(
        [
            make_event("track", "Product Added", visitor="a"),
            make_event("track", "Order Completed", visitor="a", at=3 * HOUR),
        ]
    )
    carts = [s for s in outputs if isinstance(s, Signal) and s.kind is SignalKind.CART_ABANDONED]
    assert [(s.journey_id, s.at) for s in carts] == [("a", make_event(at=HOUR).timestamp)]
    assert snapshots(outputs)[-1].conversions == 1


def test_an_add_to_cart_without_an_order_within_the_hour_is_an_abandoned_cart() -> None:
    abandoned = run(
        [
            make_event("track", "Product Added", visitor="a"),
            make_event("page", visitor="b", at=2 * HOUR),
        ]
    )
    bought = run(
        [
            make_event("track", "Product Added", visitor="a"),
            make_event("track", "Order Completed", visitor="a", at=40 * MIN),
            make_event("page", visitor="b", at=2 * HOUR),
        ]
    )
    carts = [s for s in abandoned if isinstance(s, Signal) and s.kind is SignalKind.CART_ABANDONED]
    assert [(s.journey_id, s.at) for s in carts] == [("a", make_event(at=HOUR).timestamp)]
    assert "cart_abandoned" not in signals(bought)


# --- identities ---------------------------------------------------------------------------------


def test_logging_in_links_the_device_and_keeps_its_session_and_history() -> None:
    e = engine()
    outputs = run(
        [
            make_event("track", "Product Viewed", visitor="phone"),
            make_event("identify", visitor="phone", user_id="cust-1", at=MIN),
            make_event("track", "Order Completed", visitor="phone", user_id="cust-1", at=2 * MIN),
        ],
        e,
    )
    (link,) = [o for o in outputs if isinstance(o, IdentityLink)]
    assert (link.previous_id, link.customer_id, link.kind) == ("phone", "cust-1", LinkKind.LINKED)
    assert e.journeys.journey("shop", "phone") is None
    journey = e.journeys.journey("shop", "cust-1")
    assert journey is not None and journey.furthest == "purchase"
    assert len({s.session_id for s in snapshots(outputs)}) == 1


def test_two_devices_become_one_journey_that_begins_with_the_first_visit() -> None:
    """A phone browses anonymously; days later a laptop logs in; then the phone logs in too."""
    e = engine()
    run(
        [
            make_event("page", visitor="phone", channel="paid_social", path="/p/tv"),
            make_event("track", "Product Viewed", visitor="phone", at=MIN),
            make_event("page", visitor="laptop", at=3 * DAY, channel="email"),
            make_event("identify", visitor="laptop", user_id="cust-7", at=3 * DAY + MIN),
            make_event("track", "Product Added", visitor="laptop", user_id="cust-7", at=3 * DAY),
            make_event("identify", visitor="phone", user_id="cust-7", at=4 * DAY),
        ],
        e,
    )
    assert len(e.journeys) == 1
    journey = e.journeys.journey("shop", "cust-7")
    assert journey is not None
    assert journey.first_seen == make_event().timestamp
    assert (journey.first_channel, journey.first_touchpoint) == ("paid_social", "ad")
    assert journey.furthest == "purchase"


def test_a_shared_device_never_merges_two_customers() -> None:
    e = engine()
    outputs = run(
        [
            make_event("identify", visitor="family-pc", user_id="alice"),
            make_event("track", "Order Completed", visitor="family-pc", user_id="alice", at=MIN),
            make_event("identify", visitor="family-pc", user_id="bob", at=HOUR),
            make_event("track", "Product Viewed", visitor="family-pc", user_id="bob", at=2 * HOUR),
        ],
        e,
    )
    kinds = [o.kind for o in outputs if isinstance(o, IdentityLink)]
    assert kinds == [LinkKind.LINKED, LinkKind.RELINKED]
    alice, bob = e.journeys.journey("shop", "alice"), e.journeys.journey("shop", "bob")
    assert alice is not None and alice.furthest == "purchase"
    assert bob is not None and bob.furthest == "consideration" and bob.orders == 0


def test_a_reset_starts_a_fresh_anonymous_journey() -> None:
    e = engine()
    run(
        [
            make_event("identify", visitor="anon-1", user_id="alice"),
            make_event("track", "Order Completed", visitor="anon-1", user_id="alice", at=MIN),
            make_event("page", visitor="anon-2", at=HOUR),  # after logout the tracker resets
        ],
        e,
    )
    fresh = e.journeys.journey("shop", "anon-2")
    assert fresh is not None and fresh.furthest == "awareness"


def test_an_alias_merges_a_former_id_into_the_customer() -> None:
    e = engine()
    outputs = run(
        [
            make_event("track", "Order Completed", visitor=None, user_id="old-id"),
            make_event("alias", visitor=None, user_id="new-id", previous_id="old-id", at=DAY),
            make_event("track", "Order Completed", visitor=None, user_id="old-id", at=2 * DAY),
        ],
        e,
    )
    assert [o.kind for o in outputs if isinstance(o, IdentityLink)] == [LinkKind.ALIASED]
    journey = e.journeys.journey("shop", "new-id")
    assert journey is not None and journey.orders == 2 and journey.phase == "retention"
    assert e.journeys.journey("shop", "old-id") is None


# --- determinism --------------------------------------------------------------------------------


STORY = [
    make_event("page", visitor="a", channel="organic_search"),
    make_event("track", "Product Viewed", visitor="a", at=MIN),
    make_event("page", visitor="b", at=10 * MIN),
    make_event("identify", visitor="a", user_id="cust", at=20 * MIN),
    make_event("track", "Product Added", visitor="a", user_id="cust", at=21 * MIN),
    make_event("page", visitor="b", at=3 * HOUR),
    make_event("track", "Order Completed", visitor="a", user_id="cust", at=3 * DAY),
    make_event("page", visitor="c", at=40 * DAY),
]


def test_a_replay_gives_byte_identical_outputs() -> None:
    first = [o.to_bytes() for o in run(STORY)]
    second = [o.to_bytes() for o in run(STORY)]
    assert first == second and len(first) > 20


def test_restoring_exported_state_at_any_point_continues_exactly() -> None:
    uninterrupted = [o.to_bytes() for o in run(STORY)]
    for split in range(len(STORY) + 1):
        before = engine()
        head = run(STORY[:split], before)
        resumed = engine()
        resumed.restore_state(orjson.loads(orjson.dumps(before.export_state())))
        tail = run(STORY[split:], resumed)
        assert [o.to_bytes() for o in head + tail] == uninterrupted, split


def test_derived_ids_are_standard_uuid5s() -> None:
    import uuid

    from contracts.journeys import KLANTREIS_NAMESPACE, derived_id

    for parts in [("a",), ("shop", "visitor-1", "e-1"), ("", "ü", "x" * 300)]:
        assert derived_id(*parts) == str(uuid.uuid5(KLANTREIS_NAMESPACE, "\x1f".join(parts)))


def test_a_transition_says_whether_it_came_in_the_journeys_first_session_or_a_later_one() -> None:
    outputs = run(
        [
            make_event("page", path="/p/tv"),
            make_event("track", "Product Viewed", at=MIN),
            make_event("track", "Product Added", at=2 * DAY),  # a later visit
        ]
    )
    moved = [o for o in outputs if isinstance(o, PhaseTransition) and o.kind != "dropped_off"]
    assert [(t.to_phase, t.segment) for t in moved] == [
        ("awareness", "new"),
        ("consideration", "new"),
        ("purchase", "returning"),
    ]
