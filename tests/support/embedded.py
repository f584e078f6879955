"""The embedded pipeline in-process, as an HTTP client talks to it (real chDB)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from contracts.settings import load_settings
from klantreis.embedded import create_app
from services.metrics.warehouse import Warehouse

AUTH = ("demo", "")
PAGE = {"type": "page", "anonymous_id": "visitor-1"}
ADMIN_TOKEN = "adm-embedded-5c1e9b27d4a8f036"
ANONYMOUS = {"anonymous": True}


async def _read_as_admin(request: httpx.Request) -> None:
    """Reads without a token of their own go as the admin: most tests are about the figures,
    the access tests send their own token, or none with `extensions=ANONYMOUS`."""
    if request.url.path.startswith("/api/") and "authorization" not in request.headers:
        if not request.extensions.get("anonymous"):
            request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"


@asynccontextmanager
async def embedded(
    chdb_dsn: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    async with embedded_app(chdb_dsn, tmp_path, **overrides) as (http, _):
        yield http


@asynccontextmanager
async def embedded_app(
    chdb_dsn: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Warehouse]]:
    """The embedded app and a client, with the warehouse it writes (for tests that look at
    the rows themselves). Events are applied as they come (no reorder hold), so a test reads
    what it posted at once; the hold's own tests are in tests/unit/sessionizer/test_reorder.py
    and test_embedded_up.py runs the embedded default."""
    settings = load_settings(
        kafka_bootstrap_servers="",
        clickhouse_dsn=chdb_dsn,
        data_dir=tmp_path,
        flush_interval_seconds=0.05,
        **(
            {
                "clickhouse_database": f"http_{uuid.uuid4().hex[:10]}",
                "admin_token": ADMIN_TOKEN,
                "reorder_seconds": 0,
            }
            | overrides
        ),
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://c",
            event_hooks={"request": [_read_as_admin]},
        ) as http,
    ):
        yield http, app.state.read.warehouse
