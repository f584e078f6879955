"""A shop's own segments: an A/B bucket on every event of simulated traffic, and plans set by
identify calls that carry forward. Conversion, orders and revenue per segment equal a direct
computation over the raw rows; an order sent twice under two event ids counts once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.events import Event
from contracts.phases import load_phase_model
from contracts.settings import load_settings
from klantreis.simulator import ab_bucket_of, collected_events, store_simulated
from services.metrics import queries
from services.metrics.app import open_warehouse
from services.metrics.filters import Filters
from services.metrics.queries import DateRange
from services.metrics.warehouse import Warehouse
from tests.integration.clickhouse.test_read_api_funnels import identify, load, page, track
from tests.support.embedded import embedded

SITE = "shop"
MODEL = load_phase_model("default")
NOW = datetime(2026, 11, 30, 23, tzinfo=UTC)
DAYS = DateRange(date(2026, 11, 5), date(2026, 11, 28))
BUCKETS = ("test", "control")


@pytest.fixture(scope="module")
def ab_test(
    tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str
) -> Iterator[tuple[Warehouse, list[Event]]]:
    settings = load_settings(
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"test_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("segments"),
    )
    warehouse = open_warehouse(settings)
    try:
        events = collected_events(seed=11, visitors=4_000, days=28, now=NOW, ab_test=True)
        # Every tenth order again under a new event id, a minute later: the shop's server
        # confirming what the browser had sent.
        orders = [e for e in events if e.event == "Order Completed"]
        again = [
            msgspec.structs.replace(
                e, event_id=str(uuid.uuid4()), timestamp=e.timestamp + timedelta(minutes=1)
            )
            for e in orders[::10]
        ]
        events = sorted(events + again, key=lambda e: e.timestamp)
        store_simulated(warehouse, events, MODEL)
        yield warehouse, events
    finally:
        warehouse.close()


def test_conversion_orders_and_revenue_per_bucket_equal_a_direct_count_of_the_raw_rows(
    ab_test: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, events = ab_test
    sessions = warehouse.query(
        "SELECT session_id, argMax(anonymous_id, version), argMax(conversions, version) "
        "FROM {database}.sessions WHERE site_id = 'shop' GROUP BY session_id "
        "HAVING toDate(min(started_at)) BETWEEN {first:Date} AND {last:Date}",
        {"first": DAYS.first, "last": DAYS.last},
    )
    orders: dict[str, dict[str, float]] = {bucket: {} for bucket in BUCKETS}
    for e in events:
        if e.event == "Order Completed" and DAYS.since <= e.timestamp < DAYS.until:
            orders[e.properties["ab_bucket"]].setdefault(
                e.properties["order_id"], e.properties["revenue"]
            )
    sent_twice = sum(1 for e in events if e.event == "Order Completed") - sum(
        map(len, orders.values())
    )
    assert sent_twice > 20

    shown = {}
    for bucket in BUCKETS:
        figures = queries.shop_metrics(
            warehouse, SITE, MODEL, DAYS, filters=Filters(segment=f"ab_bucket:{bucket}")
        )
        mine = [s for s in sessions if ab_bucket_of(s[1]) == bucket]
        assert figures.sessions == len(mine) > 1000
        assert figures.converting_sessions == sum(1 for s in mine if s[2] > 0)
        assert figures.conversion_rate == pytest.approx(
            sum(1 for s in mine if s[2] > 0) / len(mine)
        )
        assert figures.orders == len(orders[bucket]) > 50
        assert figures.revenue == pytest.approx(sum(orders[bucket].values()))
        shown[bucket] = figures
    whole = queries.shop_metrics(warehouse, SITE, MODEL, DAYS)
    assert whole.orders == sum(f.orders for f in shown.values())  # each order once, in one bucket
    assert whole.sessions == sum(f.sessions for f in shown.values())

    # The funnel of each bucket: journeys moved in its visits, the two adding up to the whole.
    reach = [
        [r.journeys for r in queries.phase_funnel(
            warehouse, SITE, MODEL, DAYS, Filters(segment=f"ab_bucket:{bucket}"))]
        for bucket in BUCKETS
    ]  # fmt: skip
    everyone = [r.journeys for r in queries.phase_funnel(warehouse, SITE, MODEL, DAYS)]
    assert [a + b for a, b in zip(*reach, strict=True)] == everyone
    assert (
        queries.shop_metrics(
            warehouse, SITE, MODEL, DAYS, filters=Filters(segment="ab_bucket:neither")
        ).sessions
        == 0
    )


async def test_a_trait_counts_from_the_identify_call_that_set_it_until_one_changes_it(
    chdb_dsn: str, tmp_path: Path
) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    hour = timedelta(hours=1)

    def plan(who: str, at: datetime, customer: str, name: str) -> dict[str, Any]:
        return identify(who, at, customer) | {"traits": {"plan": name, "seats": 3}}

    def order(who: str, at: datetime, customer: str, order_id: str, revenue: int) -> dict[str, Any]:
        return track(who, at, "Order Completed", customer, order_id=order_id, revenue=revenue)

    journeys = [
        # Ann: a visit before any plan, then gold (an order), a day later platinum (an order).
        page("ann", t), plan("ann", t + hour, "ann", "gold"),
        order("ann", t + 2 * hour, "ann", "a-1", 100),
        plan("ann", t + 25 * hour, "ann", "platinum"),
        order("ann", t + 26 * hour, "ann", "a-2", 300),
        # Bob: gold from the start; his order sent twice, by the browser and the server.
        plan("bob", t + hour, "bob", "gold"), order("bob", t + 2 * hour, "bob", "b-1", 40),
        order("bob", t + 2 * hour + timedelta(seconds=30), "bob", "b-1", 40),
    ]  # fmt: skip
    async with embedded(chdb_dsn, tmp_path) as http:
        await load(http, journeys)

        async def figures(segment: str) -> Any:
            response = await http.get(
                "/api/v1/metrics", params={"site": "demo", "segment": segment}
            )
            assert response.status_code == 200, response.text
            return response.json()

        gold, platinum = await figures("plan:gold"), await figures("plan:platinum")
        assert (gold["orders"], gold["revenue"]) == (2, 140)
        assert (platinum["orders"], platinum["revenue"]) == (1, 300)
        assert (await figures("seats:3"))["orders"] == 3  # a number, as written
        assert (await figures("plan:silver"))["orders"] == 0


def test_a_breakdown_by_the_shops_segment_gives_each_buckets_funnel_and_conversion(
    ab_test: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = ab_test
    rows = {
        r.value: r for r in queries.breakdown(warehouse, SITE, MODEL, "segment:ab_bucket", DAYS)
    }
    assert set(rows) == set(BUCKETS)
    for bucket in BUCKETS:
        alone = Filters(segment=f"ab_bucket:{bucket}")
        figures = queries.shop_metrics(warehouse, SITE, MODEL, DAYS, filters=alone)
        assert rows[bucket].sessions == figures.sessions
        assert rows[bucket].conversion_rate == figures.conversion_rate
        # the funnel of the bucket's visits, as recorded (trends and breakdowns count so)
        trend = queries.trends(warehouse, SITE, MODEL, DAYS, alone)
        assert sum(rows[bucket].journeys_by_phase.values()) > 0
        assert (
            max(d.journeys_by_phase["awareness"] for d in trend)
            <= rows[bucket].journeys_by_phase["awareness"]
        )
    by_campaign = queries.breakdown(warehouse, SITE, MODEL, "campaign", DAYS)
    campaigns = {r.value: r.sessions for r in by_campaign}
    assert {"winter_sale", "reels_q4", "weekly"} <= set(campaigns)
    whole = queries.shop_metrics(warehouse, SITE, MODEL, DAYS)
    assert sum(s or 0 for s in campaigns.values()) == whole.sessions  # one landing campaign each
    sale = queries.shop_metrics(
        warehouse, SITE, MODEL, DAYS, filters=Filters(campaign="winter_sale")
    )
    assert campaigns["winter_sale"] == sale.sessions > 0
    with pytest.raises(ValueError, match="segment:<key>"):
        queries.breakdown(warehouse, SITE, MODEL, "segment:no spaces", DAYS)
