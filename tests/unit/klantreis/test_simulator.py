from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from klantreis.simulator import PAYMENT_FAILED, Incident, device_of, generate_journeys
from services.ingest.intake import intake

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_a_seed_gives_the_same_traffic_every_time() -> None:
    assert generate_journeys(7, 50, 30, now=NOW) == generate_journeys(7, 50, 30, now=NOW)
    assert generate_journeys(7, 50, 30, now=NOW) != generate_journeys(8, 50, 30, now=NOW)


def test_traffic_has_short_and_long_journeys_buyers_reviewers_and_drop_outs() -> None:
    journeys = generate_journeys(1, 400, 60, now=NOW)
    lengths = [len(journey) for journey in journeys]
    names = Counter(e.get("event") for journey in journeys for e in journey)
    assert min(lengths) <= 2 and max(lengths) >= 15
    assert names["Order Completed"] > 0 and names["Product Reviewed"] > 0
    abandoned = [
        j
        for j in journeys
        if any(e.get("event") == "Checkout Started" for e in j)
        and not any(e.get("event") == "Order Completed" for e in j)
    ]
    assert abandoned
    mediums = {
        e["context"]["page"]["url"].partition("utm_medium=")[2].split("&")[0]
        for j in journeys
        for e in j
    }
    assert {"cpc", "email", "paid_social"} <= mediums


def test_every_generated_event_passes_the_collectors_validation() -> None:
    for journey in generate_journeys(3, 100, 30, now=NOW):
        stamped = [{**event, "sent_at": NOW.isoformat()} for event in journey]
        result = intake(stamped, "demo", NOW, 32 * 1024)
        assert result.rejections == []
        assert all(e.timestamp <= NOW for e in result.events)


def test_an_incident_fails_payments_on_its_device_and_days_only() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    incident = Incident.parse("mobile:2026-11-10:2026-11-16")
    journeys = generate_journeys(seed=4, visitors=3_000, days=30, now=now, incident=incident)
    calm = generate_journeys(seed=4, visitors=3_000, days=30, now=now)
    failed = [e for j in journeys for e in j if e.get("event") == PAYMENT_FAILED]
    assert len(failed) > 10
    for event in failed:
        assert device_of(event["anonymous_id"])[0] == "mobile"
        assert incident.first <= datetime.fromisoformat(event["timestamp"]).date() <= incident.last
    # Outside it the traffic is the same as without one.
    untouched = [j for j in journeys if not any(e.get("event") == PAYMENT_FAILED for e in j)]
    assert len(untouched) == len(journeys) - len({e["anonymous_id"] for e in failed})
    assert all(journey in calm for journey in untouched)
    with pytest.raises(ValueError, match="before it begins"):
        Incident.parse("mobile:2026-11-16:2026-11-10")


def test_an_ab_test_puts_each_visitor_in_one_bucket_on_every_event() -> None:
    journeys = generate_journeys(seed=4, visitors=400, days=10, ab_test=True)
    buckets = {j[0]["anonymous_id"]: {e["properties"]["ab_bucket"] for e in j} for j in journeys}
    assert all(len(b) == 1 for b in buckets.values())
    shares = [next(iter(b)) for b in buckets.values()]
    assert 0.4 < shares.count("test") / len(shares) < 0.6
