"""Step funnels, touchpoint credit and the shop's metrics on hand-built journeys with known
answers, through the whole embedded pipeline (collector, sessionizer, chDB)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.embedded import AUTH, embedded

FIRST_DAY = datetime.now(UTC).date() - timedelta(days=40)
LAST_DAY = FIRST_DAY + timedelta(days=20)
T = datetime.combine(FIRST_DAY, time(1), UTC)
SECOND, MINUTE, HOUR, DAY = (timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1),
                             timedelta(days=1))  # fmt: skip
VIEW, ADD, ORDER = "Product Viewed", "Product Added", "Order Completed"


def track(
    who: str, at: datetime, name: str, user: str | None = None, **properties: Any
) -> dict[str, Any]:
    body = {"type": "track", "event": name, "anonymous_id": who, "timestamp": at.isoformat()}
    return body | ({"user_id": user} if user else {}) | {"properties": properties}


def page(who: str, at: datetime, path: str = "/", url: str | None = None) -> dict[str, Any]:
    context = {"page": {"path": path, "url": url or f"https://shop.example{path}"}}
    return {"type": "page", "anonymous_id": who, "timestamp": at.isoformat(), "context": context}


def identify(who: str, at: datetime, customer: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "anonymous_id": who,
        "user_id": customer,
        "timestamp": at.isoformat(),
    }


# Steps view -> add -> order, window 14 days, range FIRST_DAY..LAST_DAY. How far each person
# gets (ordered / strict / any order):
STEP_JOURNEYS = [
    # P1 a page view between view and add: breaks only the strict funnel        3 / 1 / 3
    track("P1", T, VIEW), page("P1", T + MINUTE), track("P1", T + 2 * MINUTE, ADD),
    track("P1", T + 3 * MINUTE, ORDER),
    # P2 straight through                                                       3 / 3 / 3
    track("P2", T, VIEW), track("P2", T + MINUTE, ADD), track("P2", T + 2 * MINUTE, ORDER),
    # P3 backwards                                                              1 / 1 / 3
    track("P3", T, ORDER), track("P3", T + MINUTE, ADD), track("P3", T + 2 * MINUTE, VIEW),
    # P4 ordered a minute after the window closed                               2 / 2 / 2
    track("P4", T, VIEW), track("P4", T + DAY, ADD), track("P4", T + 14 * DAY + MINUTE, ORDER),
    # P5 ordered exactly as the window closes: still in                         3 / 3 / 3
    track("P5", T, VIEW), track("P5", T + HOUR, ADD), track("P5", T + 14 * DAY, ORDER),
    # P6 entered on the range's last day, bought the day after: not lost        3 / 3 / 3
    track("P6", T + 20 * DAY + 21 * HOUR, VIEW), track("P6", T + 21 * DAY, ADD),
    track("P6", T + 21 * DAY + MINUTE, ORDER),
    # P7 viewed the day before the range: did not enter it in order             0 / 0 / 2
    track("P7", T - DAY, VIEW), track("P7", T + MINUTE, ADD), track("P7", T + 2 * MINUTE, ORDER),
    # P8 non-linear: view, add, view, add, order                                3 / 3 / 3
    track("P8", T, VIEW), track("P8", T + MINUTE, ADD), track("P8", T + 2 * MINUTE, VIEW),
    track("P8", T + 3 * MINUTE, ADD), track("P8", T + 4 * MINUTE, ORDER),
    # P9 viewed anonymously on a phone, logged in there, then added and ordered on a laptop:
    # one person                                                                3 / 3 / 3
    track("phone9", T, VIEW), identify("phone9", T + MINUTE, "c9"),
    identify("laptop9", T + DAY, "c9"), track("laptop9", T + DAY + MINUTE, ADD, user="c9"),
    track("laptop9", T + DAY + 2 * MINUTE, ORDER, user="c9"),
]  # fmt: skip


async def load(client: Any, bodies: list[dict[str, Any]]) -> None:
    """Send in event-time order, as a live shop's traffic arrives; in batches, since the
    embedded collector answers a request once the insert holding its events is done."""
    ordered = sorted(bodies, key=lambda b: b["timestamp"])
    for start in range(0, len(ordered), 100):
        response = await client.post("/v1/events", json=ordered[start : start + 100], auth=AUTH)
        assert response.status_code == 200, response.text
        assert "rejected" not in response.json(), response.text


@pytest.fixture
async def steps_loaded(chdb_dsn: str, tmp_path: Path) -> Any:
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, STEP_JOURNEYS)
        yield client


async def funnel(client: Any, order: str, **params: Any) -> list[int]:
    response = await client.get(
        "/api/v1/funnels/steps",
        params={
            "site": "demo",
            "step": [VIEW, ADD, ORDER],
            "order": order,
            "window": "14d",
            "date_from": FIRST_DAY.isoformat(),
            "date_to": LAST_DAY.isoformat(),
        }
        | params,
    )
    assert response.status_code == 200, response.text
    return [step["people"] for step in response.json()["steps"]]


@pytest.mark.parametrize(
    ("order", "expected"),
    [("ordered", [8, 7, 6]), ("strict", [8, 6, 5]), ("any", [9, 9, 7])],
)
async def test_step_funnels_count_each_person_as_far_as_they_got(
    steps_loaded: Any, order: str, expected: list[int]
) -> None:
    assert await funnel(steps_loaded, order) == expected


async def test_a_shorter_window_loses_the_slow_buyers(steps_loaded: Any) -> None:
    # A 1-hour window: P4, P6 and P9 (hours or a day to add) stop at the view; P5 adds exactly
    # an hour on but orders 14 days on; P1, P2 and P8 take minutes.
    assert await funnel(steps_loaded, "ordered", window="1h") == [8, 4, 3]


async def test_conversion_rates_follow_the_counts(steps_loaded: Any) -> None:
    response = await steps_loaded.get(
        "/api/v1/funnels/steps",
        params={"site": "demo", "step": [VIEW, ADD, ORDER], "window": "14d",
                "date_from": FIRST_DAY.isoformat(), "date_to": LAST_DAY.isoformat()},
    )  # fmt: skip
    steps = response.json()["steps"]
    assert [s["conversion_from_previous"] for s in steps] == pytest.approx([1, 7 / 8, 6 / 7])
    assert steps[2]["conversion_from_first"] == pytest.approx(6 / 8)


async def test_page_steps_match_a_path_and_the_paths_below_it(steps_loaded: Any) -> None:
    # Only P1 viewed a page (/) between steps; with `page:/` as the middle step P1 goes through.
    response = await steps_loaded.get(
        "/api/v1/funnels/steps",
        params={"site": "demo", "step": [VIEW, "page:/", ADD], "order": "strict",
                "date_from": FIRST_DAY.isoformat(), "date_to": LAST_DAY.isoformat()},
    )  # fmt: skip
    assert [s["people"] for s in response.json()["steps"]] == [8, 1, 1]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"step": [VIEW]}, "step"),
        ({"step": [VIEW, VIEW], "order": "any"}, "distinct steps"),
        ({"step": [VIEW, "page:checkout"]}, "starts with '/'"),
        ({"step": [VIEW, ADD], "window": "soon"}, "not a duration"),
        ({"step": [VIEW, ADD], "date_from": "2026-02-01", "date_to": "2026-01-01"}, "before"),
    ],
)
async def test_invalid_funnels_get_a_422_that_says_why(
    steps_loaded: Any, params: dict[str, Any], message: str
) -> None:
    response = await steps_loaded.get("/api/v1/funnels/steps", params={"site": "demo"} | params)
    assert response.status_code == 422
    assert message in response.text


# Touchpoints: cT saw a Google ad on a phone and logged in there; a day later came back on a
# laptop from an e-mail, logged in, viewed a product and added it to the cart. X came from a
# Google search and left.
AD = "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=tv"
MAIL = "https://shop.example/p/tv?utm_source=newsletter&utm_medium=email"
TOUCH_JOURNEYS = [
    page("phone", T, "/", url=AD), identify("phone", T + MINUTE, "cT"),
    page("laptop", T + DAY, "/p/tv", url=MAIL), identify("laptop", T + DAY + MINUTE, "cT"),
    track("laptop", T + DAY + 2 * MINUTE, VIEW, user="cT"),
    track("laptop", T + DAY + 3 * MINUTE, ADD, user="cT"),
    {**page("X", T + 2 * HOUR), "context": {"page": {"path": "/", "url": "https://shop.example/",
                                                     "referrer": "https://www.google.com/"}}},
]  # fmt: skip


async def test_touchpoints_credit_the_first_and_the_last_touch(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, TOUCH_JOURNEYS)
        response = await client.get("/api/v1/touchpoints", params={"site": "demo"})
    assert response.status_code == 200, response.text
    credit = {
        (r["phase"], r["touchpoint"], r["channel"]): (r["last_touch"], r["first_touch"])
        for r in response.json()["touchpoints"]
    }
    assert credit == {
        ("awareness", "ad", "paid_search"): (1, 1),
        ("awareness", "page", "organic_search"): (1, 1),
        ("consideration", "product_page", "email"): (1, 0),
        ("consideration", "ad", "paid_search"): (0, 1),
        ("purchase", "cart", "email"): (1, 0),
        ("purchase", "ad", "paid_search"): (0, 1),
    }


# Metrics: two shoppers' visits, then survey answers and e-mails sent by the shop's servers.
M = T + 2 * DAY
METRIC_JOURNEYS = [
    # V1, visit 1: / 30 s, /shoes 60 s, order 100, /thanks (last page: no time)
    page("V1", M), page("V1", M + 30 * SECOND, "/shoes"),
    track("V1", M + 90 * SECOND, ORDER, revenue=100), page("V1", M + 100 * SECOND, "/thanks"),
    # V2, visit 1: / 10 s, /shoes (last page)
    page("V2", M), page("V2", M + 10 * SECOND, "/shoes"),
    # V2, visit 2 (2 days on): / 20 s, order with a total of 50
    page("V2", M + 2 * DAY), track("V2", M + 2 * DAY + 20 * SECOND, ORDER, total=50),
    # V1, visit 2 (3 days on): / 40 s, order 60
    page("V1", M + 3 * DAY), track("V1", M + 3 * DAY + 40 * SECOND, ORDER, revenue=60),
    # Surveys: NPS 10, 6, 9 (2 promoters, 1 detractor); CSAT 5, 4, 2 (2 satisfied)
    track("s1", M + 5 * DAY, "NPS Submitted", score=10),
    track("s2", M + 5 * DAY, "NPS Submitted", score=6),
    track("s3", M + 5 * DAY, "NPS Submitted", score=9),
    track("s1", M + 5 * DAY + MINUTE, "CSAT Submitted", score=5),
    track("s2", M + 5 * DAY + MINUTE, "CSAT Submitted", score=4),
    track("s3", M + 5 * DAY + MINUTE, "CSAT Submitted", score=2),
    # E-mails: four delivered; e1 opened twice, e3 once
    *[track(f"r{n}", M + 6 * DAY, "Email Delivered", email_id=f"e{n}") for n in range(1, 5)],
    track("r1", M + 6 * DAY + HOUR, "Email Opened", email_id="e1"),
    track("r1", M + 6 * DAY + 2 * HOUR, "Email Opened", email_id="e1"),
    track("r3", M + 6 * DAY + HOUR, "Email Opened", email_id="e3"),
]  # fmt: skip


async def test_every_shop_metric_on_known_data(chdb_dsn: str, tmp_path: Path) -> None:
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, METRIC_JOURNEYS)
        response = await client.get("/api/v1/metrics", params={"site": "demo"})
        in_range = await client.get(
            "/api/v1/metrics",
            params={"site": "demo", "date_from": M.date().isoformat(),
                    "date_to": (M + DAY).date().isoformat()},
        )  # fmt: skip
    m = response.json()
    assert m["average_seconds_on_page"] == pytest.approx((30 + 60 + 10 + 20 + 40) / 5)
    assert (m["orders"], m["buyers"], m["repeat_buyers"]) == (3, 2, 1)
    assert m["revenue"] == pytest.approx(210)
    assert m["customer_lifetime_value"] == pytest.approx(105)
    assert m["average_order_value"] == pytest.approx(70)
    assert m["repeat_purchase_rate"] == pytest.approx(0.5)
    assert (m["nps_answers"], m["net_promoter_score"]) == (3, pytest.approx(100 / 3))
    assert (m["csat_answers"], m["customer_satisfaction"]) == (3, pytest.approx(2 / 3))
    assert (m["emails_delivered"], m["emails_opened"], m["email_open_rate"]) == (4, 2, 0.5)
    assert [(p["path"], p["exits"], p["page_views"]) for p in m["exit_pages"]] == [
        ("/", 2, 4),
        ("/shoes", 1, 2),
        ("/thanks", 1, 1),
    ]
    assert m["exit_pages"][0]["exit_rate"] == pytest.approx(0.5)
    # The first two days hold V1's and V2's first visits only.
    r = in_range.json()
    assert (r["orders"], r["revenue"], r["sessions"]) == (1, pytest.approx(100), 2)
    assert r["net_promoter_score"] is None and r["email_open_rate"] is None


def day(offset: int) -> str:
    return (FIRST_DAY + timedelta(days=offset)).isoformat()


async def test_trends_and_breakdowns_read_the_daily_aggregates(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded(chdb_dsn, tmp_path) as client:
        await load(client, TOUCH_JOURNEYS + METRIC_JOURNEYS)
        trend = await client.get(
            "/api/v1/trends", params={"site": "demo", "date_from": day(0), "date_to": day(3)}
        )
        channels = await client.get(
            "/api/v1/breakdown",
            params={"site": "demo", "by": "channel", "date_from": day(0), "date_to": day(3)},
        )
        devices = await client.get(
            "/api/v1/breakdown",
            params={"site": "demo", "by": "device", "date_from": day(0), "date_to": day(3)},
        )
        segments = await client.get(
            "/api/v1/breakdown",
            params={"site": "demo", "by": "segment", "date_from": day(0), "date_to": day(3)},
        )
    days = trend.json()["days"]
    assert [d["day"] for d in days] == [day(0), day(1), day(2), day(3)]
    # Day 0: the phone's and X's visits; day 1: the laptop's; day 2: V1's and V2's first
    # visits (V1 ordered); day 3: nothing.
    assert [d["sessions"] for d in days] == [2, 1, 2, 0]
    assert [d["converting_sessions"] for d in days] == [0, 0, 1, 0]
    assert days[1]["journeys_by_phase"]["purchase"] == 1  # cT added to the cart on day 1
    by_channel = {r["value"]: r for r in channels.json()["rows"]}
    assert by_channel["email"]["journeys_by_phase"]["purchase"] == 1
    assert by_channel["paid_search"]["sessions"] == 1
    assert by_channel["organic_search"]["journeys_by_phase"]["awareness"] == 1
    by_device = {r["value"]: r for r in devices.json()["rows"]}
    # No user agent was sent, so every device is unknown. Page views: the phone, the laptop, X,
    # V1 three and V2 two. People as recorded (the aggregates do not fold ids together): the
    # phone, the laptop, cT (its track events), X, V1 and V2.
    assert set(by_device) == {"unknown"}
    assert (by_device["unknown"]["people"], by_device["unknown"]["page_views"]) == (6, 8)
    # New: the phone, X, the laptop, V1 and V2 began journeys (V1 bought in that first visit);
    # returning: cT viewed and added on the laptop, a day after its journey began on the phone.
    by_segment = {r["value"]: r["journeys_by_phase"] for r in segments.json()["rows"]}
    assert [by_segment["new"][p] for p in ("awareness", "consideration", "purchase")] == [5, 1, 1]
    assert [by_segment["returning"][p] for p in ("awareness", "consideration", "purchase")] == [
        1,
        1,
        1,
    ]
    # Conversion between phases per segment: one of the five new journeys got to consideration,
    # and that one bought.
    new = {r["value"]: r for r in segments.json()["rows"]}["new"]["from_previous_phase"]
    assert (new["awareness"], new["consideration"], new["purchase"]) == (None, 0.2, 1.0)
    # Only the device figures are estimates, and the answer says which.
    assert devices.json()["estimated"] == ["people", "page_views"]
    assert channels.json()["estimated"] == segments.json()["estimated"] == []
