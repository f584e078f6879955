"""The read API on hand-built journeys whose answers are known, through the whole embedded
pipeline (collector, sessionizer, chDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.embedded import AUTH, embedded

T = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
MINUTE, DAY = timedelta(minutes=1), timedelta(days=1)


def event(visitor: str, at: timedelta, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"anonymous_id": visitor, "timestamp": (T + at).isoformat()}
    return body | ({"type": "track", "event": name} if name else {"type": "page"})


# In the order a collector receives them. Expected, by the default model:
#   A  page, view, add, order (one session)            buyer; dropped off in purchase (2 days)
#   B  one page view                                   bounce; dropped off in awareness (7 days)
#   C  page, add 20 s later, then nothing              engaged; cart abandoned (1 h); dropped
#                                                      off in purchase
#   D  order, and another order 5 days later           2 sessions; dropped off in purchase
#                                                      (2 days), returned; repeat buyer, in
#                                                      retention
#   E  page, view 30 s later                           engaged; dropped off in consideration
#   Z  one page view 20 days on                        bounce; moves event time past it all
JOURNEYS = [
    event("A", 0 * MINUTE), event("A", 1 * MINUTE, "Product Viewed"),
    event("A", 2 * MINUTE, "Product Added"), event("A", 3 * MINUTE, "Order Completed"),
    event("B", 0 * MINUTE),
    event("C", 0 * MINUTE), event("C", timedelta(seconds=20), "Product Added"),
    event("D", 0 * MINUTE, "Order Completed"),
    event("E", 0 * MINUTE), event("E", timedelta(seconds=30), "Product Viewed"),
    event("D", 5 * DAY, "Order Completed"),
    event("Z", 20 * DAY),
]  # fmt: skip


@pytest.fixture
async def loaded(chdb_dsn: str, tmp_path: Path) -> Any:
    async with embedded(chdb_dsn, tmp_path) as client:
        response = await client.post("/v1/events", json=JOURNEYS, auth=AUTH)  # in order
        assert response.status_code == 200 and "rejected" not in response.json(), response.text
        yield client


async def test_dropoff_per_phase(loaded: Any) -> None:
    body = (await loaded.get("/api/v1/dropoff", params={"site": "demo"})).json()
    assert [(p["phase"], p["reached"], p["dropped"]) for p in body["phases"]] == [
        ("awareness", 6, 1),
        ("consideration", 4, 1),
        ("purchase", 3, 2),
        ("retention", 1, 0),
        ("advocacy", 0, 0),
    ]
    assert body["phases"][2]["rate"] == pytest.approx(2 / 3)


async def test_shop_metrics(loaded: Any) -> None:
    body = (await loaded.get("/api/v1/metrics", params={"site": "demo"})).json()
    assert body["sessions"] == 7
    assert body["conversion_rate"] == pytest.approx(3 / 7)  # A, and both of D's sessions
    assert body["bounce_rate"] == pytest.approx(2 / 7)  # B and Z
    assert body["carts_abandoned"] == 1  # C
    assert body["cart_abandonment_rate"] == pytest.approx(1 / 4)  # of 1 abandoned + 3 ordered
    assert (body["buyers"], body["repeat_buyers"]) == (2, 1)
    assert body["repeat_purchase_rate"] == pytest.approx(0.5)


async def test_unknown_sites_get_404(loaded: Any) -> None:
    for path in ("/api/v1/dropoff", "/api/v1/metrics"):
        response = await loaded.get(path, params={"site": "elsewhere"})
        assert response.status_code == 404 and response.json()["error"] == "unknown_site"


async def test_prometheus_counts_transitions_and_signals(loaded: Any) -> None:
    exposed = (await loaded.get("/metrics")).text
    # A, C, and D before its second order
    assert (
        'klantreis_sessionizer_transitions_total{kind="dropped_off",to_phase="purchase"} 3.0'
        in (exposed)
    )
    assert 'klantreis_sessionizer_transitions_total{kind="returned",to_phase="purchase"} 1.0' in (
        exposed
    )
    assert 'klantreis_sessionizer_signals_total{kind="cart_abandoned"} 1.0' in exposed
    assert 'klantreis_sessionizer_signals_total{kind="repeat_purchase"} 1.0' in exposed
    assert "klantreis_sessionizer_events_processed_total 12.0" in exposed


async def test_the_daily_aggregates_give_the_same_funnel_and_dropoff_without_identities(
    loaded: Any,
) -> None:
    """No one here logged in, so journeys as recorded are the customers: the fast path
    (exact=false, from the materialized views) must agree with the raw rows."""
    days = {"site": "demo", "date_from": (T - DAY).date().isoformat(),
            "date_to": datetime.now(UTC).date().isoformat()}  # fmt: skip
    for path in ("/api/v1/funnel", "/api/v1/dropoff"):
        exact = (await loaded.get(path, params=days)).json()["phases"]
        fast = (await loaded.get(path, params=days | {"exact": "false"})).json()["phases"]
        for row in exact:
            row.pop("after_touchpoints", None)
        for row in fast:
            row.pop("after_touchpoints", None)
        if path == "/api/v1/dropoff":
            # The fast figure counts every journey that dropped off in the range, the exact one
            # those whose last word it was: D dropped off in purchase, then ordered again.
            fast_purchase, exact_purchase = fast[2], exact[2]
            assert (fast_purchase["dropped"], exact_purchase["dropped"]) == (3, 2)
            for row in (fast_purchase, exact_purchase):
                del row["dropped"], row["rate"]
        assert fast == exact, path
    touch = (await loaded.get("/api/v1/touchpoints", params=days)).json()["touchpoints"]
    fast_touch = (await loaded.get("/api/v1/touchpoints", params=days | {"exact": "false"})).json()[
        "touchpoints"
    ]
    assert {(t["phase"], t["touchpoint"], t["channel"], t["last_touch"]) for t in fast_touch} == {
        (t["phase"], t["touchpoint"], t["channel"], t["last_touch"])
        for t in touch
        if t["last_touch"]  # rows that only get first-touch credit
    }
    assert all(t["first_touch"] is None for t in fast_touch)
