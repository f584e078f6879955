"""The two-stage sessionizer (identities by device, journeys by customer) against the one-stream
engine, over arbitrary streams and arbitrary orders in which the partitions' records meet."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import DeadLetter, Event, EventType
from contracts.journeys import PhaseTransition, SessionSnapshot, Signal, SignalKind
from contracts.kafka import key_partition
from contracts.phases import DEFAULT_PHASE_MODEL
from contracts.records import SessionizerOutput
from contracts.timecodec import to_micros
from klantreis.simulator import collected_events
from services.sessionizer.encoding import changelog_record, state_change
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from services.sessionizer.stages import (
    IdentityStage,
    JourneyStage,
    Routed,
    RoutedKind,
    StateChange,
    idle_markers,
    upstream_watermarks,
)
from tests.support.factories import T0, make_event
from tests.support.streams import streams

RULES = JourneyRules(DEFAULT_PHASE_MODEL)
HOUR = timedelta(hours=1)
END_OF_TIME = T0 + timedelta(days=3650)
Stage = TypeVar("Stage", IdentityStage, JourneyStage)
Outputs = dict[tuple[str, bytes], list[bytes]]


def by_key(outputs: Iterable[SessionizerOutput]) -> Outputs:
    """Every output per topic (record type) and Kafka key, in order; dead letters (keyed by
    site, so records of several journeys share a key) as a sorted list.

    Journey and session numbers depend on the partition that gave them, so they are checked
    to identify their journeys and sessions (`check_numbers`) and then left out."""
    outputs = list(outputs)
    check_numbers(outputs)
    keyed: Outputs = defaultdict(list)
    for output in outputs:
        if isinstance(output, SessionSnapshot):
            output = msgspec.structs.replace(output, journey_number=None, session_number=None)
        elif isinstance(output, PhaseTransition):
            output = msgspec.structs.replace(output, journey_number=None)
        keyed[(type(output).__name__, output.partition_key)].append(output.to_bytes())
    for (kind, _), records in keyed.items():
        if kind == DeadLetter.__name__:
            records.sort()
    return dict(keyed)


def check_numbers(outputs: list[SessionizerOutput]) -> None:
    """Every journey id carries one number and every session one number, none given twice:
    counting distinct numbers counts journeys and sessions."""
    of_journey: dict[bytes, set[int | None]] = defaultdict(set)
    of_session: dict[str, set[int | None]] = defaultdict(set)
    for output in outputs:
        if isinstance(output, SessionSnapshot | PhaseTransition):
            of_journey[output.partition_key].add(output.journey_number)
        if isinstance(output, SessionSnapshot):
            of_session[output.session_id].add(output.session_number)
    assert all(len(numbers) == 1 and None not in numbers for numbers in of_journey.values())
    assert all(len(numbers) == 1 and None not in numbers for numbers in of_session.values())
    journeys = [n for numbers in of_journey.values() for n in numbers]
    sessions = [n for numbers in of_session.values() for n in numbers]
    assert len(set(journeys)) == len(journeys)
    assert len(set(sessions)) == len(sessions)


def one_stream(events: list[Event], rules: JourneyRules = RULES) -> Outputs:
    engine = JourneyEngine(rules)
    outputs = [output for event in events for output in engine.process(event)]
    return by_key(outputs + engine.drain())


@dataclass
class Changelog:
    """A compacted changelog: the latest value of every key."""

    latest: dict[bytes, bytes | None] = field(default_factory=dict)

    def write(self, changes: list[StateChange]) -> None:
        """As the Kafka edge writes them: each change as its changelog record's bytes."""
        self.latest.update(changelog_record(change) for change in changes)

    def restore(self, stage: Stage) -> Stage:
        for key, value in self.latest.items():
            stage.apply_change(state_change(key, value))
        stage.finish_restore()
        return stage


def two_stages(
    events: list[Event],
    upstream: int,
    downstream: int,
    rng: random.Random,
    rules: JourneyRules = RULES,
) -> tuple[Outputs, list[JourneyStage]]:
    """Stage 1 over `upstream` events partitions in batches, stage 2 over `downstream` journeys
    partitions; every record travels on a channel that keeps its order (one producer to one
    partition), and the channels are delivered in an order drawn from `rng`. Now and then a
    stage is replaced by one restored from its changelog, as after a crash. At the end of its
    input, each events partition lets go of the events it still holds."""
    inputs: list[deque[Event]] = [deque() for _ in range(upstream)]
    for event in events:
        inputs[key_partition(event.partition_key, range(upstream))].append(event)
    stage1 = [IdentityStage(rules, p) for p in range(upstream)]
    stage2 = [JourneyStage(rules, upstream, q) for q in range(downstream)]
    logs1 = [Changelog() for _ in range(upstream)]
    logs2 = [Changelog() for _ in range(downstream)]
    # (source, journeys partition) -> records in flight, from ("events", p) or ("journeys", q)
    channels: dict[tuple[tuple[str, int], int], deque[Routed]] = defaultdict(deque)
    outputs: list[SessionizerOutput] = []

    def send(source: tuple[str, int], routed: Iterable[Routed]) -> None:
        for record in routed:
            channels[(source, key_partition(record.partition_key, range(downstream)))].append(
                record
            )

    def busy_partitions() -> list[int]:
        return [p for p in range(upstream) if inputs[p] or len(stage1[p].hold)]

    while busy_partitions() or any(channels.values()):
        busy = busy_partitions()
        ready = [channel for channel, records in channels.items() if records]
        if busy and (not ready or rng.random() < 0.3):
            p = rng.choice(busy)
            if rng.random() < 0.1:
                stage1[p] = logs1[p].restore(IdentityStage(rules, p))
            if not inputs[p]:
                links, routed = stage1[p].release_due(END_OF_TIME)
                outputs += links
                send(("events", p), routed)
            for _ in range(min(len(inputs[p]), rng.randint(1, 8))):
                links, routed = stage1[p].route(inputs[p].popleft())
                outputs += links
                send(("events", p), routed)
            for q, marker in upstream_watermarks(p, stage1[p].newest, range(downstream)):
                channels[(("events", p), q)].append(marker)
            logs1[p].write(stage1[p].take_changes())
            continue
        channel = rng.choice(ready)
        q = channel[1]
        if rng.random() < 0.1:
            stage2[q] = logs2[q].restore(JourneyStage(rules, upstream, q))
        produced, routed = stage2[q].process(channels[channel].popleft())
        outputs += produced
        send(("journeys", q), routed)
        logs2[q].write(stage2[q].take_changes())
    return by_key(outputs), stage2


@settings(max_examples=200, deadline=None)
@given(streams(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_one_events_partition_gives_what_one_stream_gives(
    events: list[Event], downstream: int, rng: random.Random
) -> None:
    """Whatever the order in which hand-offs and watermarks arrive, and across restarts: with
    all events in one partition, the journeys come out exactly as one engine over the stream
    makes them, logins across devices included."""
    outputs, stages = two_stages(events, 1, downstream, rng)
    assert outputs == one_stream(events)
    assert not any(stage.waiting for stage in stages)


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.integers(1, 4),
    st.sampled_from([timedelta(seconds=5), timedelta(minutes=10)]),
    st.randoms(use_true_random=False),
)
def test_one_events_partition_that_holds_events_gives_what_one_stream_gives(
    events: list[Event], downstream: int, window: timedelta, rng: random.Random
) -> None:
    """The same with events held to be put back in time order, across restarts that restore
    what was held from the changelog."""
    rules = JourneyRules(DEFAULT_PHASE_MODEL, reorder_window=window)
    outputs, stages = two_stages(events, 1, downstream, rng, rules)
    assert outputs == one_stream(events, rules)
    assert not any(stage.waiting for stage in stages)


@settings(max_examples=200, deadline=None)
@given(streams(), st.integers(2, 3), st.integers(1, 4), st.randoms(use_true_random=False))
def test_every_customer_has_one_journey_whatever_partitions_their_devices_use(
    events: list[Event], upstream: int, downstream: int, rng: random.Random
) -> None:
    outputs, stages = two_stages(events, upstream, downstream, rng)
    journeys = [key for stage in stages for key in stage.journeys.journeys]
    assert len(journeys) == len(set(journeys))
    assert not any(stage.waiting for stage in stages)
    # Every event that is no duplicate, no alias and not late is in exactly one session.
    closed = {
        snapshot.session_id: snapshot.event_count
        for (kind, _), records in outputs.items()
        if kind == SessionSnapshot.__name__
        for snapshot in map(SessionSnapshot.from_bytes, records)
        if snapshot.closed
    }
    still_open = sum(
        journey.session.events
        for stage in stages
        for journey in stage.journeys.journeys.values()
        if not journey.session.closed
    )
    late = len(outputs.get((DeadLetter.__name__, b"shop"), []))
    unique = {event.event_id: event for event in events}.values()
    accepted = sum(1 for event in unique if event.type is not EventType.ALIAS) - late
    assert sum(closed.values()) + still_open == accepted


def test_a_customers_order_from_the_shops_server_clears_the_cart_added_in_the_browser() -> None:
    """The browser's events are keyed by its anonymous id, the server's order by the customer
    id: two partitions. One journey per customer means no abandoned-cart signal after the
    order, wherever the two were sent."""
    events = [
        make_event("page", visitor="browser-1"),
        make_event("identify", visitor="browser-1", user_id="cust-7"),
        make_event("track", "Product Added", visitor="browser-1", user_id="cust-7"),
        make_event(
            "track", "Order Completed", visitor=None, user_id="cust-7", at=timedelta(minutes=20)
        ),  # fmt: skip
        make_event("page", visitor="browser-1", user_id="cust-7", at=timedelta(hours=3)),
    ]
    partitions = {key_partition(event.partition_key, range(6)) for event in events[:4]}
    assert len(partitions) == 2  # the server's order lands elsewhere than the browser's events
    outputs, _ = two_stages(events, 6, 6, random.Random(1))
    assert not [r for rs in outputs.values() for r in rs if b'"cart_abandoned"' in r]
    per_partition = [JourneyEngine(RULES) for _ in range(6)]
    separately = [
        output
        for event in events
        for output in per_partition[key_partition(event.partition_key, range(6))].process(event)
    ]
    assert any(b'"cart_abandoned"' in output.to_bytes() for output in separately)


def test_a_watermark_before_any_event_is_not_sent() -> None:
    assert upstream_watermarks(0, None, range(3)) == []
    routed = upstream_watermarks(2, 5, range(2))
    assert [(q, r.kind, r.upstream, r.watermark) for q, r in routed] == [
        (0, RoutedKind.WATERMARK, 2, 5),
        (1, RoutedKind.WATERMARK, 2, 5),
    ]


def test_a_device_whose_partition_ran_behind_still_joins_the_customers_journey() -> None:
    """Catching up after an outage, the phone's login a day later reaches the journey stage
    before the laptop's order of the day before: the order still counts as the customer's
    purchase, not as a late event, and the journey's first touch stays the phone's."""
    phone = [
        make_event("page", visitor="phone", channel="paid_social"),
        make_event("identify", visitor="phone", user_id="cust", at=timedelta(days=1)),
    ]
    laptop = [
        make_event("identify", visitor="laptop", user_id="cust", at=timedelta(hours=20)),
        make_event(
            "track", "Order Completed", visitor="laptop", user_id="cust", at=timedelta(hours=20)
        ),  # fmt: skip
    ]
    stage1 = {"phone": IdentityStage(RULES, 0), "laptop": IdentityStage(RULES, 1)}
    stage2 = JourneyStage(RULES, 2)  # one journeys partition: every hand-off comes back here
    outputs: list[SessionizerOutput] = []
    pending: deque[Routed] = deque()
    for device, events in (("phone", phone), ("laptop", laptop)):  # the phone's partition first
        for event in events:
            pending.extend(stage1[device].route(event)[1])
    while pending:
        produced, handoffs = stage2.process(pending.popleft())
        outputs += produced
        pending.extend(handoffs)
    assert not [o for o in outputs if isinstance(o, DeadLetter)]
    journey = stage2.journeys.journey("shop", "cust")
    assert journey is not None
    assert (journey.furthest, journey.orders, journey.first_channel) == (
        "purchase",
        1,
        "paid_social",
    )
    assert not stage2.journeys.journey("shop", "laptop") and not stage2.journeys.journey(
        "shop", "phone"
    )


def test_shop_traffic_on_six_partitions_gives_the_same_outputs_in_any_order() -> None:
    """Every simulated customer uses one device, so each journey's events come from one events
    partition; what meets on the journeys partitions, and when, must then change nothing (the
    guarantee the exactly-once integration tests rely on)."""
    events = collected_events(seed=5, visitors=300, days=10, now=T0 + timedelta(days=10))
    runs = [two_stages(events, 6, 6, random.Random(seed))[0] for seed in range(3)]
    assert runs[0] == runs[1] == runs[2]
    transitions = [r for (kind, _), rs in runs[0].items() if kind == "PhaseTransition" for r in rs]
    assert b'"dropped_off"' in b"".join(transitions)  # the watermark fired timers


def quiet_shop(passed: timedelta | None) -> list[SessionizerOutput]:
    """One visitor adds to cart on a shop with three events partitions and no other traffic;
    then, if `passed` is given, every identity stage's clock moves to that long after the add,
    as an idle, caught-up partition's does. Everything is delivered in order."""
    events = [
        make_event("page", visitor="lone-1"),
        make_event("track", "Product Added", visitor="lone-1", at=timedelta(minutes=2)),
    ]
    identities = [IdentityStage(RULES, p) for p in range(3)]
    journeys = [JourneyStage(RULES, 3, q) for q in range(3)]
    outputs: list[SessionizerOutput] = []

    def deliver(routed: Iterable[Routed], partition: int | None = None) -> None:
        for record in routed:
            q = (
                partition
                if partition is not None
                else key_partition(record.partition_key, range(3))
            )
            produced, handoffs = journeys[q].process(record)
            outputs.extend(produced)
            deliver(handoffs)

    for event in events:
        links, routed = identities[key_partition(event.partition_key, range(3))].route(event)
        outputs.extend(links)
        deliver(routed)
    for p, stage in enumerate(identities):
        for q, marker in upstream_watermarks(p, stage.newest, range(3)):
            deliver([marker], q)
        if passed is not None:
            for q, marker in stage.pass_time(events[-1].timestamp + passed, range(3)):
                deliver([marker], q)
    return outputs


def cart_signals(outputs: Iterable[SessionizerOutput]) -> list[Signal]:
    return [o for o in outputs if isinstance(o, Signal) and o.kind is SignalKind.CART_ABANDONED]


def test_a_quiet_shops_abandoned_cart_is_signalled_once_the_clock_passes_it() -> None:
    """Events partitions that receive no events hold the journeys' clock back: the cart waits
    for traffic that may not come. An idle partition's clock follows the wall clock; then the
    signal fires, dated when the cart ran out, not when the clock moved."""
    assert cart_signals(quiet_shop(None)) == []
    due = timedelta(hours=1) + RULES.allowed_lateness
    assert cart_signals(quiet_shop(due - timedelta(seconds=1))) == []
    [signal] = cart_signals(quiet_shop(due + timedelta(hours=5)))
    assert signal.at == T0 + timedelta(minutes=2) + timedelta(hours=1)


def test_an_identity_stages_clock_only_moves_forward() -> None:
    stage = IdentityStage(RULES, 0)
    stage.route(make_event("page"))
    assert stage.newest == to_micros(T0)
    stage.route(make_event("page", at=timedelta(minutes=5)))
    assert stage.pass_time(T0 + timedelta(minutes=1), [0]) == []
    assert stage.newest == to_micros(T0 + timedelta(minutes=5))
    [(_, marker)] = stage.pass_time(T0 + timedelta(minutes=6), [0])
    assert stage.newest == marker.watermark == to_micros(T0 + timedelta(minutes=6))


def test_the_embedded_engines_clock_follows_the_wall_clock_when_told() -> None:
    engine = JourneyEngine(RULES)
    engine.process(make_event("track", "Product Added", visitor="lone-2"))
    assert cart_signals(engine.pass_time(T0 + timedelta(minutes=30))) == []
    [signal] = cart_signals(engine.pass_time(T0 + timedelta(hours=2)))
    assert signal.at == T0 + timedelta(hours=1)
    assert cart_signals(engine.pass_time(T0 + timedelta(hours=3))) == []  # fired once


def test_partitions_that_never_had_an_event_are_left_out_of_the_watermark() -> None:
    """Announced as idle and empty, across a restore from the changelog; once such a partition
    has events, it counts again."""
    stage = JourneyStage(RULES, upstream_partitions=3)
    changelog = Changelog()
    stage.process(Routed(RoutedKind.WATERMARK, watermark=to_micros(T0), upstream=0))
    assert stage.watermark is None  # partitions 1 and 2 not heard of
    for upstream in (1, 2):
        [(_, marker)] = idle_markers(upstream, [0])
        stage.process(marker)
    assert stage.watermark == T0 - RULES.allowed_lateness
    changelog.write(stage.take_changes())
    restored = changelog.restore(JourneyStage(RULES, upstream_partitions=3))
    assert restored.watermark == T0 - RULES.allowed_lateness
    restored.process(Routed(RoutedKind.WATERMARK, watermark=to_micros(T0 - HOUR), upstream=2))
    assert restored.watermark == T0 - HOUR - RULES.allowed_lateness


def test_a_stream_that_never_had_an_event_keeps_no_clock() -> None:
    """History replayed into a new pipeline after it sat idle is not behind a wall clock."""
    identities = IdentityStage(RULES, 0)
    [(_, marker)] = identities.pass_time(T0, [0])
    assert (marker.kind, marker.watermark, identities.newest) == (RoutedKind.WATERMARK, None, None)
    engine = JourneyEngine(RULES)
    assert engine.pass_time(T0) == []
    assert engine.journeys.clock.newest is None
