"""Erasure in the sessionizer's state: the ids' identities and journeys are forgotten, with
tombstones for the changelog, and their next events start a new, unlinked history."""

from __future__ import annotations

from datetime import timedelta

from contracts.journeys import IdentityLink
from contracts.phases import DEFAULT_PHASE_MODEL
from services.sessionizer.encoding import changelog_record, routed_from_record, routed_headers
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from services.sessionizer.stages import IdentityStage, JourneyStage, RoutedKind, StateKind
from tests.support.factories import make_event

RULES = JourneyRules(model=DEFAULT_PHASE_MODEL)
MINUTE = timedelta(minutes=1)


def test_the_engine_forgets_a_customer_and_their_device() -> None:
    engine = JourneyEngine(RULES)
    engine.process(make_event(visitor="phone"))
    engine.process(make_event("identify", visitor="phone", user_id="carol", at=MINUTE))
    engine.process(
        make_event("track", "Order Completed", visitor=None, user_id="carol", at=2 * MINUTE)
    )
    assert engine.active_journeys == 1
    engine.forget("shop", ["carol", "phone"])
    assert engine.active_journeys == 0
    state = str(engine.export_state())
    assert "carol" not in state and "phone" not in state
    outputs = engine.process(make_event(visitor="phone", at=3 * MINUTE))
    assert not [o for o in outputs if isinstance(o, IdentityLink)]
    assert "carol" not in str(engine.export_state())


def test_the_identity_stage_writes_a_tombstone_and_passes_the_erasure_on() -> None:
    stage = IdentityStage(RULES, partition=0)
    stage.route(make_event(visitor="phone"))
    stage.take_changes()
    routed = stage.erase("shop", "phone")
    assert (routed.kind, routed.site_id, routed.journey_id) == (RoutedKind.ERASE, "shop", "phone")
    (identity,) = [c for c in stage.take_changes() if c.kind is StateKind.IDENTITY]
    assert identity.key == ("shop", "phone") and identity.value is None
    assert changelog_record(identity)[1] is None  # a tombstone
    assert routed_from_record(b"", routed_headers(routed)) == routed


def test_the_journey_stage_forgets_the_journey_and_what_waits_for_it() -> None:
    identities = IdentityStage(RULES, partition=0)
    stage = JourneyStage(RULES, upstream_partitions=1)
    for event in (
        make_event(visitor="phone"),
        make_event("track", "Product Added", visitor="phone", at=MINUTE),
    ):
        for routed in identities.route(event)[1]:
            stage.process(routed)
    assert stage.journeys.journey("shop", "phone") is not None
    stage.take_changes()
    assert stage.process(identities.erase("shop", "phone")) == ([], [])
    assert stage.journeys.journey("shop", "phone") is None
    (journey,) = [c for c in stage.take_changes() if c.kind is StateKind.JOURNEY]
    assert journey.value is None
    # its cart timer finds it gone: nothing fires for it, however late
    later = make_event(visitor="other", at=timedelta(days=30))
    outputs = [o for r in identities.route(later)[1] for o in stage.process(r)[0]]
    assert all(getattr(o, "journey_id", "") != "phone" for o in outputs)
