"""The embedded pipeline in-process, as an HTTP client talks to it (real chDB)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from contracts.settings import load_settings
from klantreis.embedded import create_app

AUTH = ("demo", "")
PAGE = {"type": "page", "anonymous_id": "visitor-1"}


@asynccontextmanager
async def embedded(
    chdb_dsn: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        kafka_bootstrap_servers="",
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"http_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        flush_interval_seconds=0.05,
        **overrides,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http,
    ):
        yield http
