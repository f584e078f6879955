"""The metrics worker's write path against a raw clickhouse-connect insert of the same rows, in one
run on a real local broker and the embedded engine (chDB).

    .venv/bin/python bench/warehouse.py [--visitors 4000] [--batch 20000]

Simulated traffic and what the sessionizer makes of it (events, sessions, transitions, signals,
identities) are written to fresh topics. Then, into two fresh databases of one chDB:

- raw: the same rows, prepared beforehand as tuples, inserted with clickhouse-connect in batches
  of `--batch` rows per table (the floor: what the engine and the client cost);
- worker: the metrics worker consumes the topics (read_committed), decodes each record, maps it
  to its row and inserts per table in batches of `--batch`, recording each batch's plan and
  committing offsets after the insert. Timed from its first fetch (after the group join) to the
  last row written; once every record is consumed the bench asks for the last, partial batch at
  once (as a stop does), instead of the worker waiting out its flush interval for more rows.

Prints rows/s of each and the ratio worker / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from klantreis.config import Settings, load_settings
from klantreis.events import Event
from klantreis.kafka import write_records
from klantreis.local_kafka import LocalKafka
from klantreis.phases import load_phase_model
from klantreis.runtime import tune_garbage_collection
from klantreis.simulator import collected_events
from services.metrics.metrics import WarehouseMetrics
from services.metrics.rows import Row, mapping_for
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker
from services.sessionizer.core import JourneyEngine, JourneyRules, SessionizerOutput

NOW = datetime(2026, 6, 1, tzinfo=UTC)
Record = Event | SessionizerOutput


def simulated(visitors: int) -> list[Record]:
    """Simulated traffic and what the sessionizer makes of it."""
    events = collected_events(seed=21, visitors=visitors, days=30, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    records: list[Record] = list(events)
    for event in events:
        records += engine.process(event)
    return records


def raw_insert(warehouse: Warehouse, records: list[Record], batch: int) -> float:
    """Seconds to insert the prepared rows, `batch` rows per insert per table."""
    by_table: dict[str, tuple[tuple[str, ...], list[Row]]] = {}
    for record in records:
        mapping = mapping_for(record)
        by_table.setdefault(mapping.table, (mapping.columns, []))[1].append(mapping.to_row(record))
    started = time.perf_counter()
    for table, (columns, rows) in by_table.items():
        for start in range(0, len(rows), batch):
            warehouse.insert(table, columns, rows[start : start + batch])
    return time.perf_counter() - started


async def worker_path(settings: Settings, warehouse: Warehouse, total: int) -> float:
    """Seconds for the metrics worker to consume, decode, insert and commit every record."""
    metrics = WarehouseMetrics(CollectorRegistry())
    stop = asyncio.Event()
    async with MetricsWorker(settings, warehouse, metrics) as worker:
        task = asyncio.create_task(worker.run(stop))
        # The clock starts with the first fetch: joining a new consumer group takes the broker
        # seconds of waiting, which says nothing about the write path.
        while not any(family.samples for family in metrics.consumer_lag.collect()):
            await asyncio.sleep(0.001)
            if task.done():
                task.result()
        started = time.perf_counter()
        while total_of(metrics.records_consumed) < total:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        # Everything is consumed: write the last, partial batch now rather than after the flush
        # interval, which is how long the worker waits for more rows to fill a batch.
        await worker.flush()
        assert total_of(metrics.rows_written) == total
        elapsed = time.perf_counter() - started
        stop.set()
        await task
    return elapsed


def total_of(counter: Counter) -> float:
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def counts(warehouse: Warehouse) -> dict[str, int]:
    return {
        table: int(warehouse.query(f"SELECT count() FROM {{database}}.{table}")[0][0])
        for table in ("events", "sessions", "phase_transitions", "signals", "identities")
    }


async def main(visitors: int, batch: int) -> None:
    tune_garbage_collection()  # as `klantreis metrics` does, for both paths
    with LocalKafka() as broker, tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            flush_rows=batch,
            flush_interval_seconds=1.0,
        )
        records = simulated(visitors)
        await write_records(settings, records)
        dsn = f"chdb://{data}/chdb"
        raw, via_worker, warm_up = (Warehouse(dsn, db) for db in ("raw", "worker", "warm_up"))
        for warehouse in (raw, via_worker, warm_up):
            warehouse.migrate()
        # A small insert first, so loading the client's lazy imports is timed in neither path.
        raw_insert(warm_up, records[:100], batch)
        raw_seconds = raw_insert(raw, records, batch)
        worker_seconds = await worker_path(settings, via_worker, len(records))
        raw_counts, worker_counts = counts(raw), counts(via_worker)
        for warehouse in (raw, via_worker, warm_up):
            warehouse.close()

    assert raw_counts == worker_counts, (raw_counts, worker_counts)
    total = len(records)
    print(f"rows: {total:,} ({', '.join(f'{t} {n:,}' for t, n in raw_counts.items())})")
    print(f"raw clickhouse-connect insert: {total / raw_seconds:10,.0f} rows/s")
    print(f"metrics worker (Kafka->chDB):  {total / worker_seconds:10,.0f} rows/s")
    print(f"ratio worker / raw: {raw_seconds / worker_seconds:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.batch))
