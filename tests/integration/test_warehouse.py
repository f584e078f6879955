"""The warehouse schema and write path on the real ClickHouse engine (chDB)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from klantreis.events import DeadLetter, DeadLetterReason
from services.metrics.cluster import (
    ClusterTarget,
    cluster_statements,
    create_database,
    schema_migrations_table,
)
from services.metrics.metrics import WarehouseMetrics
from services.metrics.rows import MAPPINGS
from services.metrics.warehouse import Warehouse, load_migrations
from services.metrics.writer import WarehouseWriter


def test_migrations_are_recorded_and_not_applied_twice(warehouse: Warehouse) -> None:
    assert warehouse.migrate() == []
    recorded = warehouse.query("SELECT name FROM {database}.schema_migrations ORDER BY version")
    assert [name for (name,) in recorded] == [m.name for m in load_migrations()]


def test_the_row_mappings_write_exactly_the_columns_the_migrations_create(
    warehouse: Warehouse,
) -> None:
    for mapping in MAPPINGS.values():
        columns = warehouse.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            {"db": warehouse.database, "t": mapping.table},
        )
        assert {name for (name,) in columns} == set(mapping.columns), mapping.table


def letters(n: int) -> list[DeadLetter]:
    return [
        DeadLetter(
            site_id="shop",
            reason=DeadLetterReason.SCHEMA_VIOLATION,
            message=f"bad event {i}",
            payload="{}",
            stage="ingest",
            received_at=datetime.now(UTC),
        )
        for i in range(n)
    ]


async def test_a_batch_retried_under_its_token_is_stored_once(warehouse: Warehouse) -> None:
    writer = WarehouseWriter(warehouse, WarehouseMetrics(CollectorRegistry()))

    def stored() -> int:
        return int(warehouse.query("SELECT count() FROM {database}.dead_letters")[0][0])

    writer.add(letters(50))
    await writer.flush("partition-0:0-49")
    writer.add(letters(50))
    await writer.flush("partition-0:0-49")  # a replay of the same offsets
    assert stored() == 50
    writer.add(letters(50))
    await writer.flush("partition-0:50-99")  # new offsets are new rows
    assert stored() == 100


def test_the_cluster_ddl_parses_in_clickhouse(warehouse: Warehouse) -> None:
    """A cluster cannot run here; ClickHouse's own parser still checks every statement."""
    target = ClusterTarget("shop_cluster", warehouse.database)
    statements = [
        create_database(target),
        schema_migrations_table(target),
        *[s for m in load_migrations() for s in cluster_statements(m, target)],
    ]
    for statement in statements:
        assert warehouse.query(f"EXPLAIN AST {statement}"), statement
