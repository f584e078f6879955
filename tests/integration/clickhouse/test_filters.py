"""Filters on every figure, on simulated traffic in chDB: a device, channel or segment selects
visits, and each figure counts what happened in them. The simulated shop has a payment incident
on mobile; filtered by device, the per-day step conversion dips on exactly its days."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.events import Event
from contracts.phases import load_phase_model
from contracts.settings import load_settings
from klantreis.simulator import (
    DEVICES,
    PAYMENT_FAILED,
    Incident,
    collected_events,
    device_of,
    store_simulated,
)
from services.metrics import queries
from services.metrics.app import open_warehouse
from services.metrics.filters import Filters
from services.metrics.funnel import FunnelOrder, FunnelStep
from services.metrics.queries import DateRange
from services.metrics.warehouse import Warehouse
from tests.integration.clickhouse.test_read_api_funnels import load, page
from tests.support.embedded import embedded

SITE = "shop"
MODEL = load_phase_model("default")
NOW = datetime(2026, 11, 30, 23, tzinfo=UTC)
DAYS = DateRange(date(2026, 11, 1), date(2026, 11, 28))
INCIDENT = Incident(device="mobile", first=date(2026, 11, 12), last=date(2026, 11, 18))
PAY = [FunnelStep("Checkout Started"), FunnelStep("Order Completed")]


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str
) -> Iterator[tuple[Warehouse, list[Event]]]:
    settings = load_settings(
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"test_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("filters"),
    )
    warehouse = open_warehouse(settings)
    try:
        events = collected_events(seed=5, visitors=8_000, days=35, now=NOW, incident=INCIDENT)
        store_simulated(warehouse, events, MODEL)
        yield warehouse, events
    finally:
        warehouse.close()


def test_the_payment_incident_shows_as_a_dip_on_exactly_its_days_filtered_by_mobile(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = traffic
    trend = queries.step_trends(
        warehouse, SITE, PAY, FunnelOrder.ORDERED, timedelta(hours=1), DAYS, "day",
        Filters(device="mobile"),
    )  # fmt: skip
    paid = {p.first: p.steps[1].conversion_from_previous for p in trend if p.steps[0].people}
    assert min(p.steps[0].people for p in trend) >= 10, "too few checkouts a day to tell"
    usual = statistics.median(paid.values())
    dipped = {day for day, share in paid.items() if share < 0.6 * usual}
    incident_days = {d for d in DAYS.days if INCIDENT.first <= d <= INCIDENT.last}
    assert dipped == incident_days

    # On desktop nothing happened; unfiltered, the dip is diluted by the other devices.
    desktop = queries.step_trends(
        warehouse, SITE, PAY, FunnelOrder.ORDERED, timedelta(hours=1), DAYS, "day",
        Filters(device="desktop"),
    )  # fmt: skip
    shares = [p.steps[1].conversion_from_previous for p in desktop]
    assert min(shares) > 0.6 * statistics.median(shares)

    # Beside the dip, what those who stopped at checkout did next: the payment failed.
    during = DateRange(INCIDENT.first, INCIDENT.last)
    for device, failed in (("mobile", True), ("desktop", False)):
        funnel = queries.step_funnel(
            warehouse, SITE, PAY, FunnelOrder.ORDERED, timedelta(hours=1), during,
            Filters(device=device),
        )  # fmt: skip
        next_events = [s.event for s in funnel.stopped_then if s.after_step == "Checkout Started"]
        assert (next_events[:1] == [PAYMENT_FAILED]) is failed, (device, funnel.stopped_then)
        if failed:
            (top,) = [s for s in funnel.stopped_then if s.event == PAYMENT_FAILED]
            stuck = funnel.steps[0].people - funnel.steps[1].people
            assert 0 < top.people <= stuck

    # A period's figures are the step funnel asked for that period alone, in every order.
    for order in FunnelOrder:
        daily = queries.step_trends(
            warehouse, SITE, PAY, order, timedelta(hours=1), DAYS, "day", Filters(device="mobile")
        )
        for period in daily[::4] + [daily[-1]]:
            alone = queries.step_funnel(
                warehouse, SITE, PAY, order, timedelta(hours=1),
                DateRange(period.first, period.last), Filters(device="mobile"),
            )  # fmt: skip
            assert period.steps == alone.steps, (order, period.first)

    # Weekly periods: seven days from the range's first, the last one cut at its end.
    weeks = queries.step_trends(
        warehouse, SITE, PAY, FunnelOrder.ORDERED, timedelta(hours=1), DAYS, "week",
        Filters(device="mobile"),
    )  # fmt: skip
    assert [(w.first, w.last) for w in weeks] == [
        (DAYS.first + timedelta(days=7 * n), DAYS.first + timedelta(days=7 * n + 6))
        for n in range(4)
    ]
    for week in weeks:
        alone = queries.step_funnel(
            warehouse, SITE, PAY, FunnelOrder.ORDERED, timedelta(hours=1),
            DateRange(week.first, week.last), Filters(device="mobile"),
        )  # fmt: skip
        assert week.steps == alone.steps


def test_orders_and_revenue_by_device_equal_a_count_over_the_events_sent(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, events = traffic
    for device, _, _ in DEVICES:
        sent = [
            e
            for e in events
            if e.type == "track" and e.event == "Order Completed"
            and e.anonymous_id is not None and device_of(e.anonymous_id)[0] == device
            and DAYS.since <= e.timestamp < DAYS.until
        ]  # fmt: skip
        figures = queries.shop_metrics(warehouse, SITE, MODEL, DAYS, filters=Filters(device=device))
        assert figures.orders == len({e.properties["order_id"] for e in sent}) > 0
        assert figures.revenue == pytest.approx(sum(e.properties["revenue"] for e in sent))
    failed = [e for e in events if e.event == PAYMENT_FAILED]
    assert failed and {device_of(str(e.anonymous_id))[0] for e in failed} == {"mobile"}


def test_every_figure_splits_into_its_devices(traffic: tuple[Warehouse, list[Event]]) -> None:
    """Each simulated visitor uses one device, so the devices' figures add up to the whole."""
    warehouse, _ = traffic
    devices = [Filters(device=name) for name, _, _ in DEVICES]

    def funnel(filters: Filters) -> list[int]:
        return [r.journeys for r in queries.phase_funnel(warehouse, SITE, MODEL, DAYS, filters)]

    def totals(filters: Filters) -> tuple[int, ...]:
        m = queries.shop_metrics(warehouse, SITE, MODEL, DAYS, filters=filters)
        return (m.sessions, m.engaged_sessions, m.converting_sessions, m.orders,
                m.carts_abandoned, m.emails_delivered)  # fmt: skip

    def dropped(filters: Filters) -> list[int]:
        return [r.dropped for r in queries.dropoff(warehouse, SITE, MODEL, DAYS, filters)]

    def daily(filters: Filters) -> list[int]:
        return [
            d.sessions + sum(d.journeys_by_phase.values())
            for d in queries.trends(warehouse, SITE, MODEL, DAYS, filters)
        ]

    for figure in (funnel, totals, dropped, daily):
        whole = figure(Filters())
        parts = [figure(f) for f in devices]
        assert all(any(part) for part in parts), figure.__name__
        assert [sum(column) for column in zip(*parts, strict=True)] == list(whole), figure.__name__
    on_mobile = queries.breakdown(warehouse, SITE, MODEL, "channel", DAYS, Filters(device="mobile"))
    everywhere = queries.breakdown(warehouse, SITE, MODEL, "channel", DAYS)
    assert 0 < sum(r.sessions or 0 for r in on_mobile) < sum(r.sessions or 0 for r in everywhere)


def test_a_channel_filter_counts_the_sessions_that_came_through_it(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = traffic
    by_channel = {r.value: r for r in queries.breakdown(warehouse, SITE, MODEL, "channel", DAYS)}
    for channel in ("paid_search", "email"):
        figures = queries.shop_metrics(
            warehouse, SITE, MODEL, DAYS, filters=Filters(channel=channel)
        )
        assert figures.sessions == by_channel[channel].sessions
        assert figures.sessions > 0
        assert figures.converting_sessions == by_channel[channel].converting_sessions
        trend = queries.trends(warehouse, SITE, MODEL, DAYS, Filters(channel=channel))
        assert sum(d.sessions for d in trend) == figures.sessions


def test_new_and_returning_visits_split_the_sessions(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = traffic
    new, returning = (
        queries.shop_metrics(warehouse, SITE, MODEL, DAYS, filters=Filters(segment=s))
        for s in ("new", "returning")
    )
    whole = queries.shop_metrics(warehouse, SITE, MODEL, DAYS)
    assert new.sessions > 0 and returning.sessions > 0
    assert new.sessions + returning.sessions == whole.sessions
    assert new.orders + returning.orders == whole.orders


def test_the_journey_map_flows_out_of_each_cell_as_journeys_arrived_in_it(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = traffic
    drawn = queries.journey_map(warehouse, SITE, MODEL, DAYS)
    assert {n.phase for n in drawn.nodes} == set(MODEL.phases)
    assert drawn.flows
    cells = {(n.phase, n.touchpoint): n for n in drawn.nodes}
    for flow in drawn.flows:
        assert (flow.from_phase, flow.from_touchpoint) in cells
        assert (flow.to_phase, flow.to_touchpoint) in cells
    # Every journey that arrived in a cell flowed on, dropped off, or is still there; one that
    # arrived twice and went two ways counts in each, so the cell holds at most their sum.
    for (phase, touchpoint), node in cells.items():
        out = sum(
            f.journeys
            for f in drawn.flows
            if (f.from_phase, f.from_touchpoint) == (phase, touchpoint)
        )
        assert node.journeys <= out + node.exits + node.stayed
    mobile = queries.journey_map(warehouse, SITE, MODEL, DAYS, Filters(device="mobile"))
    assert 0 < sum(n.journeys for n in mobile.nodes) < sum(n.journeys for n in drawn.nodes)
    biggest = max(drawn.nodes, key=lambda n: n.journeys)
    behind = queries.journeys_in_cell(
        warehouse, SITE, biggest.phase, biggest.touchpoint, DAYS, limit=500
    )
    assert len(behind) == min(500, biggest.journeys)


async def test_the_api_takes_the_filters_on_every_figure_and_refuses_what_it_cannot_filter(
    chdb_dsn: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    mobile, desktop = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    )
    events = [
        {**page(who, start + timedelta(minutes=n)), "context": {"user_agent": agent}}
        for n, (who, agent) in enumerate([("m1", mobile), ("m2", mobile), ("d1", desktop)])
    ]
    async with embedded(chdb_dsn, tmp_path) as http:
        await load(http, events)
        answers = {}
        for path in ("/funnel", "/dropoff", "/touchpoints", "/trends", "/breakdown",
                     "/journey-map", "/signals"):  # fmt: skip
            response = await http.get(f"/api/v1{path}", params={"site": "demo", "device": "mobile"})
            assert response.status_code == 200, (path, response.text)
            answers[path] = response.json()
            assert answers[path]["filters"] == {"device": "mobile"}, path
        assert answers["/funnel"]["phases"][0]["journeys"] == 2
        metrics = await http.get("/api/v1/metrics", params={"site": "demo", "device": "desktop"})
        assert metrics.json()["sessions"] == 1
        steps = await http.get(
            "/api/v1/funnels/steps/trend",
            params={"site": "demo", "device": "mobile", "step": ["page", "page"], "grain": "week"},
        )
        assert steps.status_code == 200, steps.text
        assert sum(p["steps"][0]["people"] for p in steps.json()["periods"]) == 2

        refusals: dict[str, tuple[dict[str, Any], str, str | None]] = {
            "exact=false": ({"exact": "false", "device": "mobile"}, "/funnel", "invalid_filter"),
            "a segment of no kind": ({"segment": "vip"}, "/metrics", None),
            "an empty device": ({"device": ""}, "/trends", None),
            "a grain of no kind": ({"grain": "hour", "step": ["a", "b"]}, "/funnels/steps/trend",
                                   None),
        }  # fmt: skip
        for case, (params, path, error) in refusals.items():
            response = await http.get(f"/api/v1{path}", params={"site": "demo", **params})
            assert response.status_code == 422, case
            if error:
                assert response.json()["error"] == error, case


def test_a_weeks_trend_counts_its_own_journeys_and_sessions_not_a_sum_of_its_days(
    traffic: tuple[Warehouse, list[Event]],
) -> None:
    warehouse, _ = traffic
    for filters in (Filters(), Filters(device="mobile")):
        weeks = queries.trends(warehouse, SITE, MODEL, DAYS, filters, grain="week")
        daily = queries.trends(warehouse, SITE, MODEL, DAYS, filters)
        assert [w.day for w in weeks] == DAYS.days[::7]
        for week in weeks:
            days = [d for d in daily if week.day <= d.day < week.day + timedelta(days=7)]
            # sessions begin on one day; a journey moves on several
            assert week.sessions == sum(d.sessions for d in days)
            aware = sum(d.journeys_by_phase["awareness"] for d in days)
            assert (
                max(d.journeys_by_phase["awareness"] for d in days)
                <= week.journeys_by_phase["awareness"]
                < aware
            )
    weeks = queries.trends(warehouse, SITE, MODEL, DAYS, grain="week")
    for week in weeks:
        ((journeys,),) = warehouse.query(
            "SELECT count(DISTINCT journey_id) FROM {database}.phase_transitions "
            "WHERE site_id = 'shop' AND kind != 'dropped_off' "
            "AND toDate(at) BETWEEN {first:Date} AND {last:Date}",
            {"first": week.day, "last": week.day + timedelta(days=6)},
        )
        assert week.journeys_by_phase["awareness"] == journeys
