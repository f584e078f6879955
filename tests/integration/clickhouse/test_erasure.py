"""Erasure on the embedded pipeline: a customer with two devices and an order is erased from
every table and from the sessionizer's state; every figure then equals that of the same shop
that never had the customer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.support.carol import CAROL, LAPTOP, PHONE, shop_events
from tests.support.embedded import ADMIN_TOKEN, ANONYMOUS, AUTH, embedded_app

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIGURES: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/funnel", {}), ("/api/v1/funnel", {"exact": "false"}), ("/api/v1/dropoff", {}),
    ("/api/v1/dropoff", {"exact": "false"}), ("/api/v1/metrics", {}), ("/api/v1/touchpoints", {}),
    ("/api/v1/trends", {}), ("/api/v1/breakdown", {"by": "channel"}),
    ("/api/v1/breakdown", {"by": "device"}),
    ("/api/v1/funnels/steps", {"step": ["page", "Product Added", "Order Completed"]}),
]  # fmt: skip


async def send(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    """In order, as batches: the embedded collector answers a request once the insert holding
    its events is done, so one request per event would wait for one insert each."""
    for start in range(0, len(events), 100):
        response = await http.post("/v1/events", json=events[start : start + 100], auth=AUTH)
        assert response.status_code == 200, response.text


async def figures(http: httpx.AsyncClient) -> list[Any]:
    answers = []
    for path, params in FIGURES:
        response = await http.get(path, params={"site": "demo", **params}, headers=ADMIN)
        assert response.status_code == 200, (path, response.text)
        answers.append(response.json())
    return answers


def rows_naming(warehouse: Any, *needles: str) -> dict[str, int]:
    tables = ("events", "sessions", "phase_transitions", "signals", "identities", "dead_letters")
    found = {}
    for table in tables:
        text = repr(warehouse.query(f"SELECT * FROM {{database}}.{table}"))
        hits = sum(text.count(needle) for needle in needles)
        if hits:
            found[table] = hits
    return found


async def test_an_erased_customer_leaves_no_row_no_state_and_no_count(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded_app(chdb_dsn, tmp_path / "without") as (http, _):
        await send(http, shop_events(40, with_carol=False))
        expected = await figures(http)

    async with embedded_app(chdb_dsn, tmp_path / "with") as (http, warehouse):
        await send(http, shop_events(40))
        assert set(rows_naming(warehouse, CAROL, PHONE, LAPTOP)) >= {
            "events", "sessions", "phase_transitions", "identities", "dead_letters"
        }  # fmt: skip
        before = await figures(http)
        assert before != expected  # carol counts, before
        anonymous = await http.delete(
            f"/api/v1/customers/{CAROL}", params={"site": "demo"}, extensions=ANONYMOUS
        )
        assert anonymous.status_code == 401
        asked = await http.delete(
            f"/api/v1/customers/{CAROL}", params={"site": "demo"}, headers=ADMIN
        )
        assert asked.status_code == 202, asked.text
        erasure = asked.json()
        assert erasure["status"] == "pending"
        for _ in range(600):
            state = (
                await http.get(f"/api/v1/admin/erasures/{erasure['erasure_id']}", headers=ADMIN)
            ).json()
            if state["status"] != "pending":
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "complete" and state["rows_deleted"] > 0, state
        assert state["seconds"] < 60
        assert rows_naming(warehouse, CAROL, PHONE, LAPTOP) == {}
        assert await figures(http) == expected
        gone = await http.get(
            f"/api/v1/customers/{CAROL}/journey", params={"site": "demo"}, headers=ADMIN
        )
        assert gone.status_code == 404

        # Afterwards carol's phone starts a new history, linked to nothing.
        await send(http, [{"type": "page", "anonymous_id": PHONE}])
        again = await http.get(
            f"/api/v1/customers/{CAROL}/journey", params={"site": "demo"}, headers=ADMIN
        )
        assert again.status_code == 404
    state_file = (tmp_path / "with" / "sessionizer-state.json").read_text()
    assert CAROL not in state_file and LAPTOP not in state_file
    assert state_file.count(PHONE) >= 1  # the new history only
