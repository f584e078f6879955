"""Retention counts from when a row was stored: history older than every TTL, imported with its
original timestamps, stays whole; rows stored longer ago than their table's retention go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.settings import DEFAULT_RETENTION_DAYS
from services.metrics.warehouse import Warehouse
from tests.support.embedded import ADMIN_TOKEN, AUTH, embedded_app

RAW_TABLES = sorted(DEFAULT_RETENTION_DAYS)
LONG_AGO = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3 * 365)


def event(visitor: str, minutes: float, name: str | None = None) -> dict[str, Any]:
    at = (LONG_AGO + timedelta(minutes=minutes)).isoformat()
    kind = {"type": "track", "event": name} if name else {"type": "page"}
    return {"anonymous_id": visitor, "timestamp": at, **kind}


def merge_with_ttl(warehouse: Warehouse) -> None:
    """What ClickHouse does in the background some day: merge every part, dropping expired
    rows."""
    for table in RAW_TABLES:
        warehouse.query(f"OPTIMIZE TABLE {{database}}.{table} FINAL")


async def test_history_older_than_every_ttl_stays_queryable(chdb_dsn: str, tmp_path: Path) -> None:
    assert all(days < 3 * 365 for days in DEFAULT_RETENTION_DAYS.values())
    history = [
        event("cart", 0), event("cart", 1, "Product Added"),  # abandoned
        event("buyer", 0), event("buyer", 2, "Product Added"), event("buyer", 4, "Order Completed"),
        event("late", 3 * 24 * 60),  # two days on: every timer of the others has fired
    ]  # fmt: skip
    async with embedded_app(chdb_dsn, tmp_path) as (http, warehouse):
        for body in history:
            assert (await http.post("/v1/events", json=body, auth=AUTH)).status_code == 200
        bad = await http.post("/v1/events", json={"type": "page"}, auth=AUTH)  # a dead letter
        assert bad.status_code == 400
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        before = (await http.get("/api/v1/metrics?site=demo", headers=headers)).json()
        merge_with_ttl(warehouse)
        after = (await http.get("/api/v1/metrics?site=demo", headers=headers)).json()
        counts = {
            t: warehouse.query(f"SELECT count() FROM {{database}}.{t}")[0][0] for t in RAW_TABLES
        }
    assert (before["carts_abandoned"], before["orders"], before["sessions"]) == (1, 1, 3)
    assert before["cart_abandonment_rate"] == 0.5
    assert after == before
    assert counts["events"] == 6 and counts["dead_letters"] == 1 and counts["signals"] >= 1


async def test_a_row_goes_when_it_was_stored_longer_ago_than_its_retention(
    chdb_dsn: str, tmp_path: Path
) -> None:
    retention = {"dead_letters": 1, "events": 0}
    async with embedded_app(chdb_dsn, tmp_path, retention_days=retention) as (http, warehouse):
        assert (await http.post("/v1/events", json={"type": "page"}, auth=AUTH)).status_code == 400
        page = {"type": "page", "anonymous_id": "v", "timestamp": LONG_AGO.isoformat()}
        assert (await http.post("/v1/events", json=page, auth=AUTH)).status_code == 200
        stored = datetime.now(UTC) - timedelta(days=2)
        # Held, so that no background merge drops the old row before it is counted.
        warehouse.query("SYSTEM STOP TTL MERGES {database}.dead_letters")
        warehouse.query(  # the same dead letter, as if stored two days ago
            "INSERT INTO {database}.dead_letters SELECT * REPLACE (toDateTime("
            f"'{stored:%Y-%m-%d %H:%M:%S}') AS stored_at) FROM {{database}}.dead_letters"
        )
        assert warehouse.query("SELECT count() FROM {database}.dead_letters")[0][0] == 2
        warehouse.query("SYSTEM START TTL MERGES {database}.dead_letters")
        merge_with_ttl(warehouse)
        dead = warehouse.query("SELECT count() FROM {database}.dead_letters")[0][0]
        events = warehouse.query("SELECT count() FROM {database}.events")[0][0]
    assert dead == 1  # the fresh one stays; the one stored two days ago went
    assert events == 1  # retention 0: kept for ever, however old the event


async def test_retention_is_configuration_applied_on_every_start(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded_app(chdb_dsn, tmp_path) as (_, warehouse):
        assert warehouse.apply_retention(DEFAULT_RETENTION_DAYS) == []  # already as asked
        assert warehouse.apply_retention(DEFAULT_RETENTION_DAYS | {"signals": 90}) == ["signals"]
        query = (
            "SELECT create_table_query FROM system.tables "
            "WHERE database = '{database}' AND name = 'signals'"
        )
        assert "TTL stored_at + toIntervalDay(90)" in warehouse.query(query)[0][0]
