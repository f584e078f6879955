"""Orders counted once per `order_id`, refunds taken off, and time on page per journey, through
the whole embedded pipeline (collector, sessionizer, chDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.clickhouse.test_read_api_funnels import (
    DAY,
    ORDER,
    SECOND,
    T,
    load,
    page,
    track,
)
from tests.support.embedded import embedded


def as_customer(body: dict[str, Any], customer: str) -> dict[str, Any]:
    """The same event as a shop's server sends it: the customer's id and no anonymous id."""
    return {key: value for key, value in body.items() if key != "anonymous_id"} | {
        "user_id": customer
    }


REFUND = "Order Refunded"
ORDER_JOURNEYS = [
    # A is sent by the browser and again by the shop's server, under another event id.
    track("b1", T, ORDER, user="c1", order_id="A", revenue=80),
    as_customer(track("-", T + 2 * SECOND, ORDER, order_id="A", revenue=80), "c1"),
    # B: 40, of which 15 is refunded the next day (the refund also sent twice, same event).
    track("b2", T + SECOND, ORDER, user="c2", order_id="B", revenue=40),
    track("b2", T + DAY, REFUND, user="c2", order_id="B", total=15),
    # C: 30, refunded in full (a refund without an amount).
    track("b2", T + 2 * DAY, ORDER, user="c2", order_id="C", total=30),
    track("b2", T + 3 * DAY, REFUND, user="c2", order_id="C"),
    # An order without an order_id is its own event.
    track("b3", T + 3 * DAY, ORDER, revenue=5),
]


async def test_an_order_sent_twice_counts_once_and_refunds_are_taken_off(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, ORDER_JOURNEYS)
        response = await client.get("/api/v1/metrics", params={"site": "demo"})
    assert response.status_code == 200, response.text
    m = response.json()
    assert (m["orders"], m["buyers"], m["repeat_buyers"]) == (4, 3, 1)
    assert m["revenue"] == pytest.approx(80 + (40 - 15) + 0 + 5)
    assert m["refunded"] == pytest.approx(15 + 30)
    assert m["average_order_value"] == pytest.approx(110 / 4)


async def test_time_on_page_follows_each_customer_whichever_ids_their_events_carry(
    chdb_dsn: str, tmp_path: Path
) -> None:
    """Two customers whose events carry only their user id browse at the same time: each page
    lasts until that customer's next event, not until the other's."""
    seven = [
        page("-", T), page("-", T + 50 * SECOND, "/shoes"),
        track("-", T + 100 * SECOND, "Product Added"),
    ]  # fmt: skip
    eight = [
        page("-", T + 5 * SECOND), page("-", T + 25 * SECOND, "/bags"),
        track("-", T + 45 * SECOND, "Product Added"),
    ]  # fmt: skip
    bodies = [as_customer(b, "u7") for b in seven] + [as_customer(b, "u8") for b in eight]
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, bodies)
        response = await client.get("/api/v1/metrics", params={"site": "demo"})
    assert response.status_code == 200, response.text
    assert response.json()["average_seconds_on_page"] == pytest.approx((50 + 50 + 20 + 20) / 4)
