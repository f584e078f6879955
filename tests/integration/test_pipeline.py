"""End to end on the real broker: HTTP -> collector -> Kafka -> sessionizer -> Kafka -> metrics
worker -> ClickHouse -> read API. The services run in this process; their Kafka traffic is real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from klantreis.config import Settings
from klantreis.phases import DEFAULT_PHASE_MODEL
from services.ingest.app import create_app as create_ingest_app
from services.metrics import api as read_api
from services.metrics.metrics import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker
from services.sessionizer.metrics import SessionizerMetrics
from services.sessionizer.worker import SessionizerWorker
from tests.integration.conftest import SITE, WRITE_KEY


async def eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(0.25)


def scalar(warehouse: Warehouse, sql: str) -> Any:
    return warehouse.query(sql)[0][0]


async def test_events_posted_over_http_reach_clickhouse_and_the_funnel(
    settings: Settings, warehouse: Warehouse
) -> None:
    registry = CollectorRegistry()
    collector = create_ingest_app(settings)
    reader = FastAPI()
    reader.include_router(read_api.router)
    reader.state.read = read_api.ReadContext(settings, warehouse, DEFAULT_PHASE_MODEL)
    stop = asyncio.Event()

    async with (
        collector.router.lifespan_context(collector),
        SessionizerWorker(settings, SessionizerMetrics(registry)) as sessions,
        MetricsWorker(settings, warehouse, WarehouseMetrics(registry)) as writer,
    ):
        tasks = [asyncio.create_task(sessions.run(stop)), asyncio.create_task(writer.run(stop))]
        try:
            transport = httpx.ASGITransport(app=collector)
            async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
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
                    and scalar(warehouse, "SELECT uniqExact(journey_id) FROM {database}.sessions")
                    == 2
                    and scalar(warehouse, "SELECT count() FROM {database}.phase_transitions") == 4
                )
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    (reason, message) = warehouse.query("SELECT reason, message FROM {database}.dead_letters")[0]
    assert reason == "schema_violation" and "needs `event`" in message
    assert warehouse.query(
        "SELECT event_count, page_views FROM {database}.sessions FINAL WHERE journey_id = 'buyer'"
    ) == [(3, 1)]

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=reader), base_url="http://r"
    ) as client:
        funnel = (await client.get("/api/v1/funnel", params={"site": SITE})).json()
    assert {p["phase"]: p["journeys"] for p in funnel["phases"]} == {
        "awareness": 2,
        "consideration": 1,
        "purchase": 1,
        "retention": 0,
        "advocacy": 0,
    }
