"""Journey and session numbers: what lets the warehouse count journeys exactly in bitmaps. Each
journey id has one number, each session one of its own, and none is given twice, also across a
restore from rows written before numbers existed."""

from __future__ import annotations

from datetime import timedelta

from contracts.journeys import SERIAL_BITS, PhaseTransition, SessionSnapshot, legacy_number
from contracts.phases import DEFAULT_PHASE_MODEL
from contracts.records import SessionizerOutput
from services.sessionizer.journeys import JourneyTracker
from services.sessionizer.rules import JourneyRules
from tests.support.factories import make_event

RULES = JourneyRules(DEFAULT_PHASE_MODEL)
MINUTE = timedelta(minutes=1)


def numbers(outputs: list[SessionizerOutput]) -> set[tuple[str, int | None, int | None]]:
    found: set[tuple[str, int | None, int | None]] = set()
    for output in outputs:
        if isinstance(output, SessionSnapshot):
            found.add((output.journey_id, output.journey_number, output.session_number))
        elif isinstance(output, PhaseTransition):
            found.add((output.journey_id, output.journey_number, None))
    return found


def test_a_partitions_numbers_carry_it_in_the_high_bits_and_count_up_from_one() -> None:
    """Journeys and sessions count up apart: each kind's numbers stay dense."""
    tracker = JourneyTracker(RULES, partition=3)
    outputs = tracker.process(make_event("page", visitor="v1"), "v1")
    outputs += tracker.process(make_event("page", visitor="v1", at=timedelta(hours=2)), "v1")
    outputs += tracker.process(make_event("page", visitor="v2", at=timedelta(hours=2)), "v2")
    assert numbers(outputs) == {
        ("v1", 3 << SERIAL_BITS | 1, 3 << SERIAL_BITS | 1),
        ("v1", 3 << SERIAL_BITS | 1, 3 << SERIAL_BITS | 2),  # the next session, after a pause
        ("v1", 3 << SERIAL_BITS | 1, None),
        ("v2", 3 << SERIAL_BITS | 2, 3 << SERIAL_BITS | 3),
        ("v2", 3 << SERIAL_BITS | 2, None),
    }


def test_a_journey_restored_from_a_row_without_numbers_takes_its_legacy_number() -> None:
    """Its warehouse rows of before carry number 0 and are counted by `legacy_number` of the
    id: its new rows must carry the same, or the journey counts twice."""
    before = JourneyTracker(RULES)
    before.process(make_event("page", visitor="old"), "old")
    state = before.export_state()
    # A row of the layout before numbers: its first 21 fields, and no serial.
    legacy = {"newest": state["newest"], "journeys": [row[:23] for row in state["journeys"]]}
    tracker = JourneyTracker(RULES)
    tracker.restore_state(legacy)

    outputs = tracker.process(make_event("page", visitor="new", at=MINUTE), "new")
    viewed = make_event("track", "Product Viewed", visitor="old", at=MINUTE)
    outputs += tracker.process(viewed, "old")

    found = numbers(outputs)
    journey_numbers = {j: n for j, n, _ in found}
    assert None not in journey_numbers.values()
    assert journey_numbers["old"] == legacy_number("old")
    assert journey_numbers["new"] == 1
    (old_session,) = {
        o.session_id for o in outputs if isinstance(o, SessionSnapshot) and o.journey_id == "old"
    }
    sessions = {s for j, _, s in found if s is not None and j == "old"}
    assert sessions == {legacy_number(old_session)}


def test_a_visitor_who_logs_in_becomes_another_journey_with_another_number() -> None:
    tracker = JourneyTracker(RULES)
    first = tracker.process(make_event("page", visitor="v1"), "v1")
    tracker.merge("shop", "v1", "ann")
    later = tracker.process(make_event("track", "Product Viewed", visitor="v1", at=MINUTE), "ann")

    (anonymous,) = {n for j, n, _ in numbers(first) if j == "v1"}
    (customer,) = {n for j, n, _ in numbers(later) if j == "ann"}
    assert anonymous != customer
    # the session goes on under the customer: same id, same number
    sessions = {
        (o.session_id, o.session_number) for o in first + later if isinstance(o, SessionSnapshot)
    }
    assert len(sessions) == 1
