"""The warehouse schema and write path on the real ClickHouse engine (chDB)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import msgspec
from prometheus_client import CollectorRegistry

from contracts.events import DeadLetter, DeadLetterReason
from contracts.journeys import IdentityLink, LinkKind, PhaseTransition, TransitionKind
from contracts.kafka import ensure_topics, new_producer
from contracts.settings import Settings
from services.metrics.cluster import (
    ClusterTarget,
    cluster_statements,
    create_database,
    schema_migrations_table,
)
from services.metrics.migrations import load_migrations
from services.metrics.rows import MAPPINGS
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker
from services.metrics.writer import WarehouseWriter
from tests.support.factories import make_event


def test_migrations_are_recorded_and_not_applied_twice(warehouse: Warehouse) -> None:
    assert warehouse.migrate() == []
    recorded = warehouse.query("SELECT name FROM {database}.schema_migrations ORDER BY version")
    assert [name for (name,) in recorded] == [m.name for m in load_migrations()]


def test_the_row_mappings_write_exactly_the_columns_the_migrations_create(
    warehouse: Warehouse,
) -> None:
    for mapping in MAPPINGS.values():
        columns = warehouse.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
            # read on insert, never stored; or computed on read (migration 0015)
            " AND default_kind NOT IN ('EPHEMERAL', 'ALIAS')"
            " AND name != 'stored_at'",  # the server's clock on insert (migration 0012)
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


async def test_every_time_column_stores_the_records_time_to_the_millisecond(
    warehouse: Warehouse,
) -> None:
    """Rows carry times as epoch milliseconds; what a table stores is the record's time."""
    at = datetime(2026, 3, 29, 1, 59, 59, 999_999, tzinfo=UTC)  # truncated to .999, not rounded
    expected = datetime(2026, 3, 29, 1, 59, 59, 999_000, tzinfo=UTC)
    event = msgspec.structs.replace(
        make_event("page"), timestamp=at, original_timestamp=at, sent_at=at, received_at=at
    )
    link = IdentityLink(
        link_id="l1", site_id="shop", previous_id="a", customer_id="c", kind=LinkKind.LINKED,
        at=at, event_id="e1",
    )  # fmt: skip
    writer = WarehouseWriter(warehouse, WarehouseMetrics(CollectorRegistry()))
    writer.add([event, link, *letters(1)])
    await writer.flush()
    times = warehouse.query(
        "SELECT timestamp, original_timestamp, sent_at, received_at FROM {database}.events"
    )
    # chDB hands back naive datetimes in the columns' zone, UTC
    assert [tuple(t.replace(tzinfo=UTC) for t in row) for row in times] == [(expected,) * 4]
    ((linked_at,),) = warehouse.query("SELECT at FROM {database}.identities")
    assert linked_at.replace(tzinfo=UTC) == expected
    (stored,) = warehouse.query("SELECT received_at FROM {database}.dead_letters")[0]
    assert abs(stored.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 60


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


async def test_the_worker_keeps_an_undecodable_record_as_a_dead_letter_and_goes_on(
    settings: Settings, warehouse: Warehouse
) -> None:
    topics = settings.topics
    link = IdentityLink(link_id="l1", site_id="shop", previous_id="anon", customer_id="c1",
                        kind=LinkKind.LINKED, at=datetime.now(UTC), event_id="e1")  # fmt: skip
    await ensure_topics(settings)
    producer = new_producer(settings)
    await producer.start()
    try:
        await producer.send(topics.identities, b'{"link_id": "broken"', key=b"shop/c1")
        wrong_time = (
            msgspec.structs.replace(link, link_id="l0")
            .to_bytes()
            .replace(link.at.isoformat().replace("+00:00", "Z").encode(), b"yesterday")
        )
        assert b"yesterday" in wrong_time
        await producer.send(topics.identities, wrong_time, key=b"shop/c1")
        await producer.send(topics.identities, None, key=b"shop/c1")  # a tombstone
        await producer.send(topics.identities, link.to_bytes(), key=b"shop/c1")
        await producer.flush()
    finally:
        await producer.stop()
    metrics = WarehouseMetrics(CollectorRegistry())
    stop = asyncio.Event()
    async with MetricsWorker(settings, warehouse, metrics) as worker:
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 60
        while not warehouse.query("SELECT 1 FROM {database}.identities WHERE link_id = 'l1'"):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        stop.set()
        await task
    letters = warehouse.query(
        "SELECT reason, stage, message FROM {database}.dead_letters ORDER BY message"
    )
    assert [(reason, stage) for reason, stage, _ in letters] == [("undecodable", "metrics")] * 3
    assert all(message.startswith(f"{topics.identities}: ") for _, _, message in letters)
    messages = " ".join(message for _, _, message in letters)
    assert "Input data was truncated" in messages, letters
    assert "Invalid RFC3339 encoded datetime" in messages, letters
    assert warehouse.query("SELECT link_id FROM {database}.identities") == [("l1",)]


def test_a_views_table_is_filled_from_rows_that_were_there_before_the_view(
    warehouse: Warehouse,
) -> None:
    """Migrating a warehouse that already holds transitions must not leave the daily funnel
    empty until new ones arrive: each view's SELECT also runs once over the existing rows."""
    transition = PhaseTransition(
        transition_id="t1", site_id="shop", journey_id="j1", session_id="s1",
        kind=TransitionKind.ENTERED, from_phase=None, to_phase="awareness",
        furthest_phase="awareness", at=datetime.now(UTC), seconds_in_previous_phase=None,
        event_id="e1", event_name=None, channel="email", touchpoint="email",
    )  # fmt: skip
    mapping = MAPPINGS[PhaseTransition]
    warehouse.insert(mapping.table, mapping.columns, [mapping.to_row(transition)])
    # As before migration 0015, which drops the aggregates and makes them again.
    (aggregates,) = [m for m in load_migrations() if m.name == "0015_exact_daily_aggregates.sql"]
    for statement in aggregates.statements(warehouse.database):
        warehouse.query(statement)
    rows = warehouse.query(
        "SELECT phase, groupBitmapMerge(journeys) FROM {database}.phase_reach_daily GROUP BY phase"
    )
    assert rows == [("awareness", 1)]
