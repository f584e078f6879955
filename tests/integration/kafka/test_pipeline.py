"""End to end on the real broker: HTTP -> collector -> Kafka -> sessionizer -> Kafka -> metrics
worker -> ClickHouse -> read API. The services run in this process; their Kafka traffic is real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.settings import Settings
from services.metrics.warehouse import Warehouse
from tests.support.pipeline import SITE, WRITE_KEY
from tests.support.services import eventually, pipeline, scalar


async def test_events_posted_over_http_reach_clickhouse_and_the_funnel(
    settings: Settings, warehouse: Warehouse
) -> None:
    async with pipeline(settings, warehouse) as (client, reader):
        response = await client.post(
            "/v1/events",
            auth=(WRITE_KEY, ""),
            json=[
                {"type": "page", "anonymous_id": "buyer", "name": "Home"},
                {"type": "track", "event": "Product Viewed", "anonymous_id": "buyer"},
                {"type": "track", "event": "Order Completed", "anonymous_id": "buyer"},
                {"type": "page", "anonymous_id": "browser"},
                {"type": "track", "anonymous_id": "browser"},  # no event name
            ],
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 4
        assert [r["index"] for r in response.json()["rejected"]] == [4]

        await eventually(
            lambda: (
                scalar(warehouse, "SELECT count() FROM {database}.events") == 4
                and scalar(warehouse, "SELECT count() FROM {database}.dead_letters") == 1
                and scalar(warehouse, "SELECT uniqExact(journey_id) FROM {database}.sessions") == 2
                and scalar(warehouse, "SELECT count() FROM {database}.phase_transitions") == 4
            )
        )
        funnel = (await reader.get("/api/v1/funnel", params={"site": SITE})).json()

    (reason, message) = warehouse.query("SELECT reason, message FROM {database}.dead_letters")[0]
    assert reason == "schema_violation" and "needs `event`" in message
    assert warehouse.query(
        "SELECT event_count, page_views FROM {database}.sessions FINAL WHERE journey_id = 'buyer'"
    ) == [(3, 1)]
    assert {p["phase"]: p["journeys"] for p in funnel["phases"]} == {
        "awareness": 2,
        "consideration": 1,
        "purchase": 1,
        "retention": 0,
        "advocacy": 0,
    }


async def test_a_phone_visit_then_a_laptop_login_is_one_journey_starting_on_the_phone(
    settings: Settings, warehouse: Warehouse
) -> None:
    """Browsing anonymously on a phone, buying days later on a laptop after logging in, and
    logging in on the phone after that: one customer, one journey, first touch on the phone."""
    ad = "https://shop.example/p/tv?utm_source=instagram&utm_medium=paid_social"
    async with pipeline(settings, warehouse) as (client, reader):
        now = datetime.now(UTC)

        def at(days_ago: float) -> str:
            return (now - timedelta(days=days_ago)).isoformat()

        phone = {"anonymous_id": "phone-1", "sent_at": now.isoformat()}
        laptop = {"anonymous_id": "laptop-1", "sent_at": now.isoformat()}
        for batch in (
            [
                {**phone, "type": "page", "timestamp": at(6), "context": {"page": {"url": ad}}},
                {**phone, "type": "track", "event": "Product Viewed", "timestamp": at(6)},
            ],
            [
                {**laptop, "type": "page", "timestamp": at(2)},
                {**laptop, "type": "identify", "user_id": "cust-42", "timestamp": at(2)},
                {**laptop, "type": "track", "event": "Order Completed", "user_id": "cust-42",
                 "timestamp": at(2)},
            ],
            [{**phone, "type": "identify", "user_id": "cust-42", "timestamp": at(1)}],
        ):  # fmt: skip
            response = await client.post("/v1/events", auth=(WRITE_KEY, ""), json=batch)
            assert response.status_code == 200, response.text
        sent = datetime.now(UTC)

        await eventually(
            lambda: (
                scalar(warehouse, "SELECT count() FROM {database}.identities") == 2
                and scalar(warehouse, "SELECT count() FROM {database}.phase_transitions") >= 4
            )
        )
        journey = await reader.get("/api/v1/customers/cust-42/journey", params={"site": SITE})
        funnel = (await reader.get("/api/v1/funnel", params={"site": SITE})).json()

    body = journey.json()
    assert journey.status_code == 200, body
    assert set(body["identities"]) == {"cust-42", "phone-1", "laptop-1"}
    first = body["first_touch"]
    assert (first["recorded_as"], first["channel"], first["touchpoint"]) == (
        "phone-1",
        "paid_social",
        "ad",
    )
    # Clock-skew correction adds the requests' own delay (sent_at was set before the first);
    # the warehouse keeps milliseconds.
    first_at = datetime.fromisoformat(first["at"])
    happened = now - timedelta(days=6)
    assert happened - timedelta(milliseconds=1) <= first_at <= happened + (sent - now)
    assert body["furthest_phase"] == "purchase"
    # One customer in the funnel, not one per device.
    assert {p["phase"]: p["journeys"] for p in funnel["phases"]}["awareness"] == 1
