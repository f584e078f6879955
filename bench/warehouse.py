"""The metrics worker's write path against a raw clickhouse-connect insert of the same rows, in one
run on a real local broker and the embedded engine (chDB).

    .venv/bin/python bench/warehouse.py [--visitors 4000] [--batch 20000] [--rounds 5]

Simulated traffic and what the sessionizer makes of it (events, sessions, transitions, signals,
identities) are written to fresh topics. Then, into fresh databases of one chDB:

- raw: the same rows, prepared beforehand as tuples, inserted with clickhouse-connect (the
  floor: what the engine and the client cost), twice:
  - in the inserts the worker makes: a batch each time one table has `--batch` rows, one insert
    per table of its share;
  - in inserts of `--batch` rows per table. chDB pays 10-70 ms per insert whatever its size
    (most of it for the parts the materialized views write), and this floor makes the fewest;
- worker: the metrics worker consumes the topics (read_committed) and inserts the records' JSON
  per table (ClickHouse parses it), a batch each time one table has `--batch` rows, recording
  each batch's plan and committing offsets after the insert. Timed from its first fetch (after
  the group join) to the last row written; once every record is consumed the bench asks for the
  last, partial batch at once (as a stop does), instead of the worker waiting out its flush
  interval for more rows.

All run `--rounds` times, in turn, each round on fresh topics and databases; prints rows/s of
each per round and, per baseline, the median of the rounds' ratios worker / raw (this machine is
shared, and one round's figures swing by a third).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from contracts.kafka import write_records
from contracts.phases import load_phase_model
from contracts.records import StoredRecord
from contracts.settings import Settings, load_settings
from klantreis.local_kafka import LocalKafka
from klantreis.runtime import tune_garbage_collection
from klantreis.simulator import collected_events
from services.metrics.rows import Row, mapping_for
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.worker import MetricsWorker
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules

# Recent, not a fixed date: signals keep 400 days and dead letters 30, and a TTL merge that
# drops expired rows in one database and not yet in another would make the counts differ.
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def simulated(visitors: int) -> list[StoredRecord]:
    """Simulated traffic and what the sessionizer makes of it."""
    events = collected_events(seed=21, visitors=visitors, days=30, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    records: list[StoredRecord] = list(events)
    for event in events:
        records += engine.process(event)
    return records


Inserts = list[tuple[str, tuple[str, ...], list[Row]]]  # table, columns, rows


def as_the_worker_inserts(records: list[StoredRecord], batch: int) -> Inserts:
    """The inserts the worker makes of `records`: a batch each time one table has `batch` rows,
    one insert per table of its share of the batch (the worker reads all topics at once, so
    each of its batches holds every table's share)."""
    tables = prepared_rows(records)
    batches = math.ceil(max(len(rows) for _, rows in tables.values()) / batch)
    inserts = []
    for index in range(batches):
        for table, (columns, rows) in tables.items():
            share = math.ceil(len(rows) / batches)
            if part := rows[index * share : (index + 1) * share]:
                inserts.append((table, columns, part))
    return inserts


def per_table(records: list[StoredRecord], batch: int) -> Inserts:
    """Each table's rows in inserts of `batch` rows: fewer, larger inserts than the worker
    makes with the same `batch`."""
    return [
        (table, columns, rows[start : start + batch])
        for table, (columns, rows) in prepared_rows(records).items()
        for start in range(0, len(rows), batch)
    ]


def prepared_rows(records: list[StoredRecord]) -> dict[str, tuple[tuple[str, ...], list[Row]]]:
    by_table: dict[str, tuple[tuple[str, ...], list[Row]]] = {}
    for record in records:
        mapping = mapping_for(record)
        by_table.setdefault(mapping.table, (mapping.columns, []))[1].append(mapping.to_row(record))
    return by_table


def raw_insert(warehouse: Warehouse, inserts: Inserts) -> float:
    """Seconds to run the inserts of prepared rows."""
    started = time.perf_counter()
    for table, columns, rows in inserts:
        warehouse.insert(table, columns, rows)
    return time.perf_counter() - started


async def worker_path(settings: Settings, warehouse: Warehouse, total: int) -> float:
    """Seconds for the metrics worker to consume, insert and commit every record."""
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


async def main(visitors: int, batch: int, rounds: int) -> None:
    tune_garbage_collection()  # as `klantreis metrics` does, for every path
    records = simulated(visitors)
    baselines = {
        "raw, the worker's inserts": as_the_worker_inserts(records, batch),
        f"raw, {batch:,} rows per table": per_table(records, batch),
    }
    ratios: dict[str, list[float]] = {name: [] for name in baselines}
    with LocalKafka() as broker, tempfile.TemporaryDirectory() as data:
        dsn = f"chdb://{data}/chdb"
        warm_up = Warehouse(dsn, "warm_up")
        warm_up.migrate()
        # A small insert of each kind first, so loading the client's and the engine's lazy
        # parts is timed in no path.
        raw_insert(warm_up, per_table(records[:100], batch))
        for record in records[:100]:
            mapping = mapping_for(record)
            warm_up.insert_json(mapping.table, mapping.json_fields, [record.to_bytes()])
        warm_up.close()
        for round_ in range(1, rounds + 1):
            # Each round: fresh topics (so a fresh consumer group) and fresh databases.
            settings = load_settings(
                kafka_bootstrap_servers=broker.bootstrap_servers,
                topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                flush_rows=batch,
                flush_interval_seconds=1.0,
            )
            await write_records(settings, records)
            seconds, stored = {}, {}
            for index, (name, inserts) in enumerate(baselines.items()):
                warehouse = Warehouse(dsn, f"raw{index}_{round_}")
                warehouse.migrate()
                seconds[name] = raw_insert(warehouse, inserts)
                stored[name] = counts(warehouse)
                warehouse.close()
            warehouse = Warehouse(dsn, f"worker_{round_}")
            warehouse.migrate()
            worker_seconds = await worker_path(settings, warehouse, len(records))
            stored["worker"] = counts(warehouse)
            warehouse.close()
            assert len({tuple(c.items()) for c in stored.values()}) == 1, stored
            if round_ == 1:
                tables = ", ".join(f"{t} {n:,}" for t, n in stored["worker"].items())
                print(f"rows: {len(records):,} ({tables})")
            figures = [f"worker (Kafka->chDB) {len(records) / worker_seconds:8,.0f} rows/s"]
            for name, raw_seconds in seconds.items():
                ratios[name].append(raw_seconds / worker_seconds)
                figures.append(f"{name} {len(records) / raw_seconds:8,.0f}")
            print(f"round {round_}: " + ", ".join(figures))
    for name, found in ratios.items():
        shown = " ".join(f"{r:.2f}" for r in found)
        print(f"ratio worker / {name}: median {statistics.median(found):.2f} ({shown})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.visitors, args.batch, args.rounds))
