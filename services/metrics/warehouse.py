"""ClickHouse access through clickhouse-connect: migrations, batched inserts, queries.

The same code serves a ClickHouse server (`http://host:8123`) and the embedded engine
(`chdb:///path`). The client is synchronous and chDB allows one database path per process, so a
process shares one Warehouse and the async services call it from threads. One call at a time
runs on the client, and writes go first (`Turns`): in embedded mode a collector's answer waits
for its insert, so a queue of dashboard reads must not stand between an event and its insert.
Inserts also run on their own thread (`run_write`), never queued behind reads in the event
loop's shared pool.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from services.metrics import cluster as cluster_ddl
from services.metrics.migrations import load_migrations

log = logging.getLogger(__name__)
# The table TTL in `system.tables.create_table_query` (one line, SETTINGS last).
_TTL = re.compile(r"\sTTL (?P<expression>.+?)(?= SETTINGS |$)")


class Turns:
    """One call at a time; a waiting writer goes before every reader that has not begun.

    Readers wait while a writer waits, so a write waits at most for the read in progress,
    however many readers queue. Writes come in bursts (a flush), so readers still get turns
    between them.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._busy and not self._writers_waiting)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers_waiting += 1
            try:
                self._changed.wait_for(lambda: not self._busy)
            finally:
                self._writers_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()


class Warehouse:
    def __init__(self, dsn: str, database: str, cluster: str = "") -> None:
        self.database = database
        self.cluster = cluster
        self._turns = Turns()
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-write")
        # On a cluster, a query's subquery over another Distributed table (the identity links)
        # runs once and is sent to every shard, instead of each shard reading only its own part.
        settings = {"distributed_product_mode": "global"} if cluster else {}
        self._client: Client = clickhouse_connect.get_client(dsn=dsn, settings=settings)

    def close(self) -> None:
        self._writes.shutdown(wait=True)
        with self._turns.writing():
            self._client.close()

    async def run_write(self, write: Callable[..., None], *args: object) -> None:
        """`write(*args)` (an insert) on the warehouse's own writing thread."""
        await asyncio.get_running_loop().run_in_executor(self._writes, write, *args)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied; return their names.

        Every statement is idempotent (IF NOT EXISTS), so a migration interrupted half-way is
        simply applied again; it is recorded only after all of its statements ran. With a
        cluster, the statements are the cluster form of the same DDL (services.metrics.cluster).
        """
        db = self.database
        target = cluster_ddl.ClusterTarget(self.cluster, db) if self.cluster else None
        with self._turns.writing():
            if target:
                self._client.command(cluster_ddl.create_database(target))
                self._client.command(cluster_ddl.schema_migrations_table(target))
            else:
                self._client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
                self._client.command(
                    f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
                    "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
                    "ENGINE = MergeTree ORDER BY version"
                )
            done = {
                row[0]
                for row in self._client.query(
                    f"SELECT version FROM {db}.schema_migrations"
                ).result_rows
            }
            applied = []
            for migration in load_migrations():
                if migration.version in done:
                    continue
                statements = (
                    cluster_ddl.cluster_statements(migration, target)
                    if target
                    else migration.statements(db)
                )
                for statement in statements:
                    self._client.command(statement)
                self._client.insert(
                    f"{db}.schema_migrations",
                    [(migration.version, migration.name, datetime.now(UTC))],
                    column_names=["version", "name", "applied_at"],
                )
                log.info("applied migration %s", migration.name)
                applied.append(migration.name)
            return applied

    def apply_retention(self, days_by_table: Mapping[str, int]) -> list[str]:
        """Make each table's TTL `stored_at + days` (none for 0); return the tables changed.

        A table whose TTL is already the one asked for is left alone: changing a TTL rewrites
        every part of the table. With a cluster, the TTL is the local tables', on every shard.
        """
        changed = []
        suffix = cluster_ddl.LOCAL_SUFFIX if self.cluster else ""
        on_cluster = f" ON CLUSTER '{self.cluster}'" if self.cluster else ""
        with self._turns.writing():
            for table, days in sorted(days_by_table.items()):
                name = f"{self.database}.{table}{suffix}"
                current = self._client.query(
                    "SELECT create_table_query FROM system.tables "
                    "WHERE database = {db:String} AND name = {table:String}",
                    parameters={"db": self.database, "table": table + suffix},
                ).result_rows[0][0]
                found = _TTL.search(current)
                if found is None and days == 0:
                    continue
                if (
                    found is not None
                    and found["expression"] == f"stored_at + toIntervalDay({days})"
                ):
                    continue
                if days == 0:
                    self._client.command(f"ALTER TABLE {name}{on_cluster} REMOVE TTL")
                else:
                    self._client.command(
                        f"ALTER TABLE {name}{on_cluster} MODIFY TTL stored_at + INTERVAL {days} DAY"
                    )
                changed.append(table)
        if changed:
            log.info("retention set for %s", ", ".join(changed))
        return changed

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        dedup_token: str | None = None,
    ) -> None:
        """One insert of many rows. With `dedup_token`, a repeat of the same token is a no-op
        (within the table's deduplication window), which makes retries safe.

        optimize_on_insert is off: a replacing table would otherwise collapse the rows of one
        block at once, so what a table holds would depend on where batches were cut. Rows are
        stored as consumed; merges collapse replaced versions later, the queries read through
        them (argMax by version), and a duplicate stays visible until a merge.
        """
        with self._turns.writing():
            self._client.insert(
                f"{self.database}.{table}",
                rows,
                column_names=list(columns),
                settings=_insert_settings(dedup_token),
            )

    def insert_json(
        self,
        table: str,
        fields: Sequence[str],
        documents: Sequence[bytes],
        dedup_token: str | None = None,
    ) -> None:
        """One insert of JSON objects, one per document, parsed by ClickHouse (JSONEachRow).
        `fields` are the documents' fields the table reads (a column, or an EPHEMERAL column
        other columns take their DEFAULT from); other fields are skipped, and a field a document
        leaves out gets the column's default. Deduplication and merges as for `insert`.

        A document ClickHouse cannot read fails the whole insert, and nothing is stored.
        """
        settings = _insert_settings(dedup_token)
        settings.update(
            # Times are ISO 8601 with a zone ("...Z"), which the basic parser refuses.
            date_time_input_format="best_effort",
            input_format_skip_unknown_fields=1,
            input_format_null_as_default=1,
            # One parsing thread: a batch is a few MB, and in embedded mode the worker's Kafka
            # consumption needs the other core meanwhile.
            input_format_parallel_parsing=0,
            # properties, traits and details: JSON objects kept as their JSON text.
            input_format_json_read_objects_as_strings=1,
        )
        with self._turns.writing():
            self._client.raw_insert(
                f"{self.database}.{table}",
                list(fields),
                b"\n".join(documents),
                settings=settings,
                fmt="JSONEachRow",
            )

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query; `{database}` in the text names this warehouse's database."""
        with self._turns.reading():
            result = self._client.query(
                sql.replace("{database}", self.database), parameters=parameters
            )
            return [tuple(row) for row in result.result_rows]


def _insert_settings(dedup_token: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"optimize_on_insert": 0}
    if dedup_token:
        settings["insert_deduplication_token"] = dedup_token
    return settings
