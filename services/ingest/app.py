"""The collector as its own process (`klantreis ingest`), producing to Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from contracts.kafka import ensure_topics, new_producer
from contracts.observability import OperatorsPort, metrics_response
from contracts.pseudonyms import Pseudonyms
from contracts.settings import Settings
from contracts.sitestore import KafkaSiteStore, seed_of
from services.ingest import api
from services.ingest.sink import KafkaEventSink
from services.ingest.telemetry import IngestMetrics


def add_probes(app: FastAPI, registry: CollectorRegistry) -> None:
    """`/healthz` says the process lives; `/readyz` says events would be stored now."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        context: api.IngestContext | None = getattr(app.state, "ingest", None)
        ready = context is not None and await context.sink.ready()
        return JSONResponse(
            {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response(registry)


def create_app(settings: Settings) -> FastAPI:
    key = settings.require_pseudonym_key()
    pseudonyms = Pseudonyms(key) if key else None
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        # Batches for a reachable partition wait no longer than a request may.
        timeout_ms = int(settings.produce_timeout_seconds * 1000)
        producer = new_producer(settings, request_timeout_ms=timeout_ms)
        await producer.start()
        try:
            async with KafkaSiteStore(settings, seed_of(settings)) as sites:
                sink = KafkaEventSink(producer, settings.topics, settings.produce_timeout_seconds)
                app.state.ingest = api.IngestContext(settings, sink, metrics, sites, pseudonyms)
                yield
        finally:
            await producer.stop()

    app = FastAPI(title="klantreis collector", version="1", lifespan=lifespan)
    api.install(app)
    add_probes(app, registry)
    if settings.ingest_ops_port:
        app.add_middleware(
            OperatorsPort,
            port=settings.ingest_ops_port,
            operator_paths=(
                "/metrics",
                "/docs",
                "/docs/oauth2-redirect",
                "/redoc",
                "/openapi.json",
            ),
        )
    return app
