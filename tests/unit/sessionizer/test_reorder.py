"""Events of one page load that reach the sessionizer out of order are put back in time order:
the journey comes out as if they had come in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import Event
from contracts.journeys import PhaseTransition, SessionSnapshot
from contracts.phases import DEFAULT_PHASE_MODEL
from contracts.records import SessionizerOutput
from services.sessionizer.encoding import changelog_record, state_change
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.reorder import ReorderBuffer
from services.sessionizer.rules import JourneyRules
from services.sessionizer.stages import IdentityStage, JourneyStage, Routed
from tests.support.factories import T0, make_event
from tests.support.streams import streams
from tests.unit.sessionizer.test_stages import by_key

WINDOW = timedelta(seconds=5)
HELD = JourneyRules(DEFAULT_PHASE_MODEL, reorder_window=WINDOW)
AS_THEY_COME = JourneyRules(DEFAULT_PHASE_MODEL)
SEC = timedelta(seconds=1)


def page_load() -> list[Event]:
    """A visitor lands from a campaign, views a product and adds it to the cart, in a second
    and a half: the page view is the one a slow preflight holds up."""
    return [
        make_event("page", visitor="v1", path="/summer", channel="email", at=0 * SEC),
        make_event("track", "Product Viewed", visitor="v1", at=SEC / 2),
        make_event("track", "Product Added", visitor="v1", at=3 * SEC / 2),
    ]


def run(engine: JourneyEngine, events: list[Event]) -> list[SessionizerOutput]:
    return [o for event in events for o in engine.process(event)] + engine.drain()


def test_a_page_view_delayed_behind_the_next_event_gives_the_same_journey_as_in_order() -> None:
    in_order = page_load()
    page, viewed, added = in_order
    delayed = [viewed, page, added]

    reference = JourneyEngine(AS_THEY_COME)
    expected = run(reference, in_order)
    held = JourneyEngine(HELD)
    outputs = run(held, delayed)

    assert by_key(outputs) == by_key(expected)
    journey = held.journeys.journey("shop", "v1")
    assert journey is not None
    assert (journey.phase, journey.first_channel, journey.session.landing_path) == (
        "purchase",
        "email",
        "/summer",
    )
    assert transitions(outputs) == [
        ("entered", "awareness"),
        ("advanced", "consideration"),
        ("advanced", "purchase"),
    ]
    # Without the hold, the same arrival order tells another story: the visitor never was
    # in awareness, and came in through a product view.
    unheld = run(JourneyEngine(AS_THEY_COME), delayed)
    assert transitions(unheld) == [("entered", "consideration"), ("advanced", "purchase")]


def transitions(outputs: list[SessionizerOutput]) -> list[tuple[str, str]]:
    return [(t.kind.value, t.to_phase) for t in outputs if isinstance(t, PhaseTransition)]


def test_the_two_stages_put_a_delayed_page_view_back_in_its_place_too() -> None:
    page, viewed, added = page_load()
    identities = IdentityStage(HELD, partition=0)
    journeys = JourneyStage(HELD, upstream_partitions=1)
    outputs: list[SessionizerOutput] = []

    def deliver(routed: list[Routed]) -> None:
        for record in routed:
            produced, handoffs = journeys.process(record)
            outputs.extend(produced)
            deliver(handoffs)

    for event in [viewed, page, added]:
        links, routed = identities.route(event)
        outputs += links
        deliver(routed)
    assert outputs == []  # all three are held: none is 5 s older than the newest
    links, routed = identities.release_due(added.timestamp + WINDOW)
    deliver(routed)
    assert by_key(outputs) == by_key(run(JourneyEngine(AS_THEY_COME), [page, viewed, added]))


def test_events_go_once_the_stream_or_the_wall_clock_is_the_window_past_them() -> None:
    hold = ReorderBuffer(WINDOW)
    first = make_event("page", at=0 * SEC)
    second = make_event("page", at=2 * SEC)
    assert hold.add(second) == []
    assert hold.add(first) == []
    assert hold.pass_time(T0 + 4 * SEC) == []
    assert hold.pass_time(T0 + 5 * SEC) == [first]
    late = make_event("page", at=10 * SEC)
    assert hold.add(late) == [second]  # the stream moved 5 s past the second event
    assert hold.oldest == late.timestamp
    assert hold.drain() == [late]


def test_events_of_the_same_moment_keep_the_order_they_came_in() -> None:
    hold = ReorderBuffer(WINDOW)
    same = [make_event("track", name, at=SEC) for name in ("Product Viewed", "Product Added")]
    for event in same:
        assert hold.add(event) == []
    assert hold.drain() == same


def test_an_event_older_than_the_window_goes_at_once_and_without_a_window_nothing_waits() -> None:
    hold = ReorderBuffer(WINDOW)
    assert hold.add(make_event("page", at=60 * SEC)) == []
    old = make_event("page", at=0 * SEC)
    assert hold.add(old) == [old]
    unheld = ReorderBuffer(timedelta(0))
    stream = [make_event("page", at=at * SEC) for at in (3, 1, 2)]
    assert [unheld.add(event) for event in stream] == [[event] for event in stream]


def test_an_erasure_forgets_the_events_held_for_the_customer() -> None:
    engine = JourneyEngine(HELD)
    mine = make_event("track", "Product Viewed", visitor="v1", user_id="alice", at=0 * SEC)
    theirs = make_event("page", visitor="v2", at=SEC)
    engine.process(mine)
    engine.process(theirs)
    engine.forget("shop", ["alice"])
    engine.drain()
    assert engine.journeys.journey("shop", "alice") is None
    assert engine.journeys.journey("shop", "v2") is not None


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(0, 4_999), min_size=40, max_size=40))
def test_any_arrival_less_than_the_window_behind_gives_what_time_order_gives(
    events: list[Event], delays_ms: list[int]
) -> None:
    """Each event delayed by less than the window: the outputs are those of the events in
    time order (ties in the order they came), whatever the delays."""
    delays = zip(events, delays_ms, strict=False)  # at most 40 events
    delay = {id(event): timedelta(milliseconds=ms) for event, ms in delays}
    arrival = sorted(events, key=lambda event: event.timestamp + delay[id(event)])
    in_time_order = sorted(arrival, key=lambda event: event.timestamp)
    assert by_key(run(JourneyEngine(HELD), arrival)) == by_key(
        run(JourneyEngine(AS_THEY_COME), in_time_order)
    )


@settings(max_examples=100, deadline=None)
@given(streams(), st.integers(0, 40), st.sampled_from([WINDOW, timedelta(minutes=10)]))
def test_a_restore_from_the_changelog_releases_what_the_running_stage_would_have(
    events: list[Event], cut: int, window: timedelta
) -> None:
    """Read back in order, as a restore reads a changelog not yet compacted."""
    rules = replace(HELD, reorder_window=window)
    running = IdentityStage(rules, 0)
    changelog: list[tuple[bytes, bytes | None]] = []
    for event in events[:cut]:
        running.route(event)
        changelog += [changelog_record(change) for change in running.take_changes()]
    restored = IdentityStage(rules, 0)
    for key, value in changelog:
        restored.apply_change(state_change(key, value))
    restored.finish_restore()
    assert restored.snapshot() == running.snapshot()
    for event in events[cut:]:
        assert restored.route(event) == running.route(event)
    end = T0 + timedelta(days=400)
    assert restored.release_due(end) == running.release_due(end)


def test_a_session_snapshot_counts_a_delayed_page_view_as_the_landing_page() -> None:
    page, viewed, added = page_load()
    outputs = run(JourneyEngine(HELD), [added, viewed, page])
    [first, *_] = [o for o in outputs if isinstance(o, SessionSnapshot)]
    assert (first.landing_path, first.channel, first.started_at) == ("/summer", "email", T0)


def test_an_event_that_comes_after_the_hold_counts_but_leaves_the_current_phase() -> None:
    """Later than the window but within the allowed lateness: the event joins its session,
    and the journey stays in the phase of its newest event."""
    engine = JourneyEngine(HELD)
    viewed = make_event("track", "Product Added", visitor="v1", at=10 * SEC)
    engine.process(viewed)
    engine.release_due(viewed.timestamp + WINDOW)
    stale = make_event("track", "Product Viewed", visitor="v1", at=0 * SEC)
    outputs = engine.process(stale)
    journey = engine.journeys.journey("shop", "v1")
    assert journey is not None
    assert (journey.phase, journey.session.events, transitions(outputs)) == ("purchase", 2, [])
