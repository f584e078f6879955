"""Batches rows per table and writes them in few, large inserts.

ClickHouse (and chDB even more) pays per insert, not per row: a batch of thousands costs about
what one row costs. Rows accumulate here until the caller flushes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from services.metrics.metrics import WarehouseMetrics
from services.metrics.rows import Record, Row, TableMapping, mapping_for
from services.metrics.warehouse import Warehouse

Batch = dict[str, tuple[TableMapping, list[Row]]]  # table -> its mapping and rows


class WarehouseWriter:
    def __init__(self, warehouse: Warehouse, metrics: WarehouseMetrics) -> None:
        self._warehouse = warehouse
        self._metrics = metrics
        self._pending: Batch = {}
        self._count = 0

    @property
    def pending_rows(self) -> int:
        return self._count

    def clear(self) -> None:
        """Forget pending rows: their offsets were not committed, so they will be consumed again."""
        self._pending, self._count = {}, 0

    def add_rows(self, mapping: TableMapping, rows: list[Row]) -> None:
        """Rows already built for `mapping`'s table."""
        entry = self._pending.get(mapping.table)
        if entry is None:
            entry = self._pending[mapping.table] = (mapping, [])
        entry[1].extend(rows)
        self._count += len(rows)

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            mapping = mapping_for(record)
            entry = self._pending.get(mapping.table)
            if entry is None:
                entry = self._pending[mapping.table] = (mapping, [])
            entry[1].append(mapping.to_row(record))
            self._count += 1

    def take(self) -> Batch:
        """Everything pending, as one batch to write; new rows start the next batch."""
        batch, self._pending, self._count = self._pending, {}, 0
        return batch

    async def write(self, batch: Batch, dedup_token: str | None = None) -> None:
        """Insert `batch`, one insert per table; a table written is taken out of `batch`, so a
        retry after a failure goes on with the rest.

        With `dedup_token` each table's insert carries `<token>:<table>`, so writing the same
        records again under the same token stores nothing twice.
        """
        for table in list(batch):
            mapping, rows = batch[table]
            token = f"{dedup_token}:{table}" if dedup_token else None
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._warehouse.insert, table, mapping.columns, rows, token)
            except Exception:
                self._metrics.failed_inserts.labels(table).inc()
                raise
            self._metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
            self._metrics.rows_written.labels(table).inc(len(rows))
            self._metrics.batch_rows.observe(len(rows))
            del batch[table]

    async def flush(self, dedup_token: str | None = None) -> None:
        """Insert everything pending. Rows added while the inserts run wait for the next flush;
        rows of a failed insert go back in front of them."""
        batch = self.take()
        try:
            await self.write(batch, dedup_token)
        finally:
            for table, (mapping, rows) in batch.items():
                newer = self._pending.get(table, (mapping, []))[1]
                self._pending[table] = (mapping, rows + newer)
            self._count = sum(len(rows) for _, rows in self._pending.values())
