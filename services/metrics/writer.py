"""Batches records per table and writes them in few, large inserts.

ClickHouse (and chDB even more) pays per insert, not per row: a batch of thousands costs about
what one row costs. Records accumulate here until the caller flushes.

Records come in two forms. The metrics worker adds them as consumed, as JSON documents that
ClickHouse parses itself (the engine reads JSON far faster than Python decodes it). Records
built in this process (the embedded pipeline's) are added as models and go in as native rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from contracts.events import DeadLetter, DeadLetterReason, RecordError
from contracts.records import StoredRecord
from services.metrics.rows import MAPPINGS, Row, TableMapping, mapping_for
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class TableBatch:
    mapping: TableMapping
    rows: list[Row] = field(default_factory=list)
    documents: list[bytes] = field(default_factory=list)  # one record's JSON each
    source: str = ""  # the topic the documents were consumed from


Batch = dict[str, TableBatch]  # by table


class WarehouseWriter:
    def __init__(self, warehouse: Warehouse, metrics: WarehouseMetrics) -> None:
        self._warehouse = warehouse
        self._metrics = metrics
        self._pending: Batch = {}

    @property
    def fullest_table_rows(self) -> int:
        """Rows pending for the table with the most: the size of the largest insert a flush
        would make now. ClickHouse's cost is per insert, so batches are cut on this."""
        return max((len(e.rows) + len(e.documents) for e in self._pending.values()), default=0)

    def clear(self) -> None:
        """Forget pending rows: their offsets were not committed, so they will be consumed again."""
        self._pending = {}

    def add_documents(self, topic: str, mapping: TableMapping, documents: list[bytes]) -> None:
        """Records of `topic` as consumed: JSON documents of `mapping`'s record type."""
        entry = self._entry(mapping)
        entry.documents.extend(documents)
        entry.source = topic

    def add(self, records: Iterable[StoredRecord]) -> None:
        for record in records:
            mapping = mapping_for(record)
            self._entry(mapping).rows.append(mapping.to_row(record))

    def _entry(self, mapping: TableMapping) -> TableBatch:
        entry = self._pending.get(mapping.table)
        if entry is None:
            entry = self._pending[mapping.table] = TableBatch(mapping)
        return entry

    def take(self) -> Batch:
        """Everything pending, as one batch to write; new rows start the next batch."""
        batch, self._pending = self._pending, {}
        return batch

    async def write(self, batch: Batch, dedup_token: str | None = None) -> None:
        """Insert `batch`, per table its documents and then its rows; what is written is taken
        out of `batch`, so a retry after a failure goes on with the rest.

        With `dedup_token` each insert carries `<token>:<table>` (rows) or
        `<token>:<table>:documents`, so writing the same records again under the same token
        stores nothing twice.
        """
        for table in list(batch):
            entry = batch[table]
            if entry.documents:
                token = f"{dedup_token}:{table}:documents" if dedup_token else None
                await self._write_documents(entry, token)
                entry.documents = []
            if entry.rows:
                token = f"{dedup_token}:{table}" if dedup_token else None
                await self._insert(entry.mapping, entry.rows, token)
                entry.rows = []
            del batch[table]

    async def _write_documents(self, entry: TableBatch, token: str | None) -> None:
        """The documents in one JSON insert. If ClickHouse refuses it, every document is decoded
        here: the ones that do not decode as the topic's record type become dead letters saying
        why, and the rest go in as native rows under the same token, so a replay stores them
        once whichever way it takes. When all of them decode, the native insert tells a value
        only ClickHouse refuses from an unreachable server: it succeeds, or it fails and the
        batch is retried.

        An empty record (a tombstone) would be skipped by the JSON reader as a blank line, so a
        batch holding one goes the decoding way at once, which makes it a dead letter."""
        mapping = entry.mapping
        if b"" not in entry.documents:
            try:
                await self._timed(
                    mapping.table,
                    len(entry.documents),
                    self._warehouse.insert_json,
                    (mapping.table, mapping.json_fields, entry.documents, token),
                )
                return
            except Exception as exc:
                log.warning(
                    "JSON insert into %s failed (%s); decoding the records", mapping.table, exc
                )
        rows, letters = self._decode(entry)
        if letters:
            await self._insert(
                MAPPINGS[DeadLetter], letters, f"{token}:dead_letters" if token else None
            )
            self._metrics.undecodable_records.labels(entry.source).inc(len(letters))
        if rows:
            await self._insert(mapping, rows, token)

    def _decode(self, entry: TableBatch) -> tuple[list[Row], list[Row]]:
        """The documents' rows, and the dead letters of those that do not decode."""
        rows, letters = [], []
        to_letter = MAPPINGS[DeadLetter].to_row
        for document in entry.documents:
            try:
                record = entry.mapping.record_type.from_bytes(document)
            except RecordError as exc:
                message = f"{entry.source}: {exc}"
                letter = DeadLetter.of(document, DeadLetterReason.UNDECODABLE, message, "metrics")
                letters.append(to_letter(letter))
            else:
                rows.append(entry.mapping.to_row(record))
        return rows, letters

    async def _insert(self, mapping: TableMapping, rows: list[Row], token: str | None) -> None:
        await self._timed(
            mapping.table,
            len(rows),
            self._warehouse.insert,
            (mapping.table, mapping.columns, rows, token),
        )

    async def _timed(
        self, table: str, count: int, insert: Callable[..., None], args: tuple[object, ...]
    ) -> None:
        started = time.perf_counter()
        try:
            await self._warehouse.run_write(insert, *args)
        except Exception:
            self._metrics.failed_inserts.labels(table).inc()
            raise
        self._metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
        self._metrics.rows_written.labels(table).inc(count)
        self._metrics.batch_rows.observe(count)

    async def flush(self, dedup_token: str | None = None) -> None:
        """Insert everything pending. Rows added while the inserts run wait for the next flush;
        rows of a failed insert go back in front of them."""
        batch = self.take()
        try:
            await self.write(batch, dedup_token)
        finally:
            for table, entry in batch.items():
                newer = self._pending.get(table)
                if newer is not None:
                    entry.rows += newer.rows
                    entry.documents += newer.documents
                    entry.source = entry.source or newer.source
                self._pending[table] = entry
