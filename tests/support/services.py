"""The three services in this process on the real broker: the collector, the sessionizer and the
metrics worker, with clients for the collector and the read API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from contracts.phases import DEFAULT_PHASE_MODEL
from contracts.settings import Settings
from contracts.sites import digest
from services.ingest.app import create_app as create_ingest_app
from services.metrics import api as read_api
from services.metrics import routes
from services.metrics.pipeline_erasure import PipelineEraser
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import Sessionizer
from tests.support.pipeline import ADMIN, ADMIN_TOKEN


async def eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(0.25)


def scalar(warehouse: Warehouse, sql: str) -> Any:
    return warehouse.query(sql)[0][0]


@asynccontextmanager
async def pipeline(
    settings: Settings, warehouse: Warehouse, collector: FastAPI | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The collector (`collector`, else a new one), the sessionizer and the metrics worker on
    the real broker, and clients for the collector and the read API (as the admin)."""
    registry = CollectorRegistry()
    collector = collector or create_ingest_app(settings)
    reader = FastAPI()
    routes.install(reader)
    stop = asyncio.Event()
    async with (
        collector.router.lifespan_context(collector),
        MetricsWorker(settings, warehouse, WarehouseMetrics(registry)) as writer,
        PipelineEraser(settings, warehouse) as eraser,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=collector), base_url="http://c") as c,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=reader), base_url="http://r", headers=ADMIN
        ) as r,
    ):
        sites = collector.state.ingest.sites  # the collector's view of the sites topic
        reader.state.read = read_api.ReadContext(
            settings, warehouse, DEFAULT_PHASE_MODEL, sites, digest(ADMIN_TOKEN), eraser=eraser
        )
        sessions = Sessionizer(settings, SessionizerMetrics(registry))
        tasks = [asyncio.create_task(sessions.run(stop)), asyncio.create_task(writer.run(stop))]
        try:
            yield c, r
        finally:
            stop.set()
            await asyncio.gather(*tasks)
