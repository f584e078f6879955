"""A site's privacy settings, set on the admin API, applied by the collector: Do Not Track,
consent, and cookieless visitor ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ingest.privacy import COOKIELESS_PREFIX
from services.metrics.warehouse import Warehouse
from tests.support.embedded import ADMIN_TOKEN, AUTH, embedded_app

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.fixture
async def shop(chdb_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Warehouse]]:
    async with embedded_app(chdb_dsn, tmp_path, forwarded_for_hops=1) as (http, warehouse):
        yield http, warehouse


async def privacy(http: httpx.AsyncClient, **settings: bool) -> None:
    response = await http.put("/api/v1/admin/sites/demo/privacy", json=settings, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["privacy"] == {
        "cookieless": False, "require_consent": False, "honour_dnt": False, **settings
    }  # fmt: skip


def stored(warehouse: Warehouse, column: str = "anonymous_id") -> list[Any]:
    query = f"SELECT {column} FROM {{database}}.events ORDER BY received_at"
    return [row[0] for row in warehouse.query(query)]


async def test_do_not_track_and_gpc_store_nothing_when_the_site_honours_them(
    shop: tuple[httpx.AsyncClient, Warehouse],
) -> None:
    http, warehouse = shop
    page = {"type": "page", "anonymous_id": "v1"}
    before = await http.post("/v1/events", json=page, auth=AUTH, headers={"DNT": "1"})
    assert before.json() == {"accepted": 1}  # not honoured until the site says so
    await privacy(http, honour_dnt=True)
    for header in ({"DNT": "1"}, {"Sec-GPC": "1"}):
        response = await http.post("/v1/events", json=[page, page], auth=AUTH, headers=header)
        assert (response.status_code, response.json()) == (200, {"accepted": 0, "ignored": 2})
    assert (
        await http.post("/v1/events", json=page, auth=AUTH, headers={"DNT": "0"})
    ).status_code == 200
    assert len(stored(warehouse)) == 2


async def test_a_site_that_requires_consent_stores_only_consented_events(
    shop: tuple[httpx.AsyncClient, Warehouse],
) -> None:
    http, warehouse = shop
    await privacy(http, require_consent=True)
    batch = [
        {"type": "page", "anonymous_id": "none"},
        {"type": "page", "anonymous_id": "yes", "context": {"consent": True}},
        {"type": "page", "anonymous_id": "no", "context": {"consent": False}},
        {"type": "track", "anonymous_id": "yes", "context": {"consent": True}},  # no name
    ]
    response = await http.post("/v1/events", json=batch, auth=AUTH)
    body = response.json()
    assert (body["accepted"], body["ignored"]) == (1, 2)
    assert [r["index"] for r in body["rejected"]] == [3]  # the index in the batch as sent
    assert stored(warehouse) == ["yes"]
    dead = warehouse.query("SELECT count() FROM {database}.dead_letters")[0][0]
    assert dead == 1  # the invalid consented one; what had no consent is not kept at all


async def test_a_cookieless_site_names_visitors_by_a_salted_hash_of_their_network(
    shop: tuple[httpx.AsyncClient, Warehouse],
) -> None:
    http, warehouse = shop
    await privacy(http, cookieless=True)

    async def visit(address: str, agent: str = CHROME, **extra: Any) -> None:
        headers = {"X-Forwarded-For": address, "User-Agent": agent}
        response = await http.post(
            "/v1/events", json={"type": "page", **extra}, auth=AUTH, headers=headers
        )
        assert response.status_code == 200, response.text

    await visit("203.0.113.7")
    await visit("203.0.113.99")  # the same /24, the same browser: the same visitor
    await visit("198.51.100.7")  # another network
    await visit("203.0.113.7", agent="Mozilla/5.0 (iPhone) Safari/604.1")  # another browser
    await visit("203.0.113.7", anonymous_id="from-the-server")  # an id of its own is kept
    ids = stored(warehouse)
    assert ids[0] == ids[1] and len(set(ids)) == 4
    assert all(one.startswith(COOKIELESS_PREFIX) for one in ids[:4]) and ids[4] == "from-the-server"
    everything = repr(warehouse.query("SELECT * FROM {database}.events"))
    assert "203.0.113" not in everything and "198.51.100" not in everything
