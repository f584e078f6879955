from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from klantreis.simulator import generate_journeys
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
