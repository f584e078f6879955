"""The metrics worker as its own process (`klantreis metrics`): the Kafka-to-ClickHouse worker
and the read API over the same warehouse.

They share a process because the embedded engine (chDB) opens its data directory in one process
only; with a ClickHouse server the read API could run anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry

from contracts.kafka import ride_out
from contracts.observability import OperatorsPort, metrics_response
from contracts.pseudonyms import Pseudonyms
from contracts.settings import Settings
from contracts.sites import digest
from contracts.sitestore import KafkaSiteStore, seed_of
from services.metrics import api, routes
from services.metrics.pipeline_erasure import PipelineEraser
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker

log = logging.getLogger(__name__)


def open_warehouse(settings: Settings) -> Warehouse:
    """Connect and bring the schema up to date: every process that writes or reads does this."""
    warehouse = Warehouse(
        settings.resolved_clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_cluster
    )
    try:
        warehouse.migrate()
        warehouse.apply_retention(settings.retention_days)
    except BaseException:
        warehouse.close()
        raise
    return warehouse


def _stop_process_if_failed(task: asyncio.Task[None]) -> None:
    """A worker that died of what a fresh start cannot mend must not leave an API serving stale
    data behind a green health check: stop the whole process, so the orchestrator restarts it
    and the group replays."""
    if not task.cancelled() and task.exception() is not None:
        log.error("metrics worker failed; stopping", exc_info=task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings) -> FastAPI:
    admin_digest = digest(settings.require_admin_token())
    key = settings.require_pseudonym_key()
    pseudonyms = Pseudonyms(key) if key else None
    registry = CollectorRegistry()
    metrics = WarehouseMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse = await asyncio.to_thread(open_warehouse, settings)
        stop = asyncio.Event()
        try:
            async with (
                KafkaSiteStore(settings, seed_of(settings)) as sites,
                PipelineEraser(settings, warehouse) as eraser,
            ):
                app.state.read = api.ReadContext(
                    settings,
                    warehouse,
                    settings.phase_model_loaded,
                    sites,
                    admin_digest,
                    pseudonyms,
                    eraser,
                )

                async def write_warehouse() -> None:
                    async with MetricsWorker(settings, warehouse, metrics) as worker:
                        await worker.run(stop)

                def restarted(reason: str) -> None:
                    metrics.restarts.labels(reason).inc()

                task = asyncio.create_task(
                    ride_out("metrics worker", write_warehouse, stop, restarted),
                    name="metrics-worker",
                )
                task.add_done_callback(_stop_process_if_failed)
                try:
                    yield
                finally:
                    stop.set()
                    await task
        finally:
            warehouse.close()

    app = FastAPI(title="klantreis read API", version="1", lifespan=lifespan)
    routes.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return metrics_response(registry)

    if settings.api_ops_port:
        app.add_middleware(OperatorsPort, port=settings.api_ops_port, operator_paths=("/metrics",))
    return app
