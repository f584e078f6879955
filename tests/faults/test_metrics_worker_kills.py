"""Fault 3, the metrics worker's delivery guarantee on the real broker and the real engine:
killed with SIGKILL between inserting a batch and committing its offsets, three times, it leaves
every table with exactly the rows of an uninterrupted run. The raw tables' merges are held, so a
duplicate row would show in a plain count()."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.events import DeadLetter, DeadLetterReason, Event
from contracts.kafka import write_records
from contracts.phases import load_phase_model
from contracts.records import SessionizerOutput
from contracts.settings import Settings, load_settings
from klantreis.local_kafka import free_port
from klantreis.simulator import collected_events
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from tests.support.pipeline import ADMIN_TOKEN
from tests.support.pipeline import committed as committed_offsets
from tests.support.processes import KLANTREIS, Service
from tests.support.warehouse_probe import probe

# Recent, not a fixed date: signals keep 400 days and dead letters 30, and a TTL merge that
# drops expired rows in one database and not yet in another would make the counts differ.
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
# Dead letters live 30 days (TTL): these must be recent, and the same in both inputs.
RECEIVED = datetime.now(UTC).replace(microsecond=0)
REPO = Path(__file__).resolve().parents[2]
STARTED: list[Service] = []


def input_records() -> list[Event | SessionizerOutput]:
    """Simulated traffic and what the sessionizer makes of it, for every topic the worker reads."""
    events = collected_events(seed=11, visitors=600, days=20, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    records: list[Event | SessionizerOutput] = list(events)
    records += [
        DeadLetter(site_id=f"shop-{n % 3}", message=f"bad event {n}", payload="{}",
                   reason=DeadLetterReason.SCHEMA_VIOLATION, stage="ingest", received_at=RECEIVED)
        for n in range(40)
    ]  # fmt: skip
    for event in events:
        records += engine.process(event)
    return records


async def write_input(settings: Settings) -> int:
    records = input_records()
    await write_records(settings, records)
    return len(records)


async def committed(settings: Settings) -> int:
    return await committed_offsets(settings, settings.topics.metrics_group)


def worker(settings: Settings, dsn: str, database: str, logs: Path, name: str,
           crash_at: int | None = None) -> Service:  # fmt: skip
    env = {
        **os.environ,
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
        "KLANTREIS_CLICKHOUSE_DSN": dsn,
        "KLANTREIS_CLICKHOUSE_DATABASE": database,
        "KLANTREIS_FLUSH_ROWS": "1000",
        "KLANTREIS_FLUSH_INTERVAL_SECONDS": "0.3",
        "KLANTREIS_API_PORT": str(free_port()),
        "KLANTREIS_API_OPS_PORT": str(free_port()),
        "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    command: Sequence[str] = [KLANTREIS, "metrics"]
    if crash_at is not None:
        env["KLANTREIS_TEST_CRASH_AT_COMMIT"] = str(crash_at)
        command = [sys.executable, "-m", "tests.support.crashing_metrics_worker"]
    log = logs / f"{name}.log"
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    service = Service(name, process, log)
    STARTED.append(service)
    return service


async def run_to_the_end(settings: Settings, service: Service, total: int) -> None:
    deadline = time.monotonic() + 240
    try:
        while await committed(settings) < total:
            assert service.process.poll() is None, service.output()
            assert time.monotonic() < deadline, service.output()[-3000:]
            await asyncio.sleep(0.2)
    finally:
        assert service.stop(), service.output()


async def test_three_sigkills_between_insert_and_commit_leave_the_rows_of_an_uninterrupted_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dsn = f"chdb://{tmp_path / 'chdb'}"
    reference = load_settings(kafka_bootstrap_servers=kafka_bootstrap,
                              topic_prefix=f"wref-{uuid.uuid4().hex[:8]}")  # fmt: skip
    crashing = load_settings(kafka_bootstrap_servers=kafka_bootstrap,
                             topic_prefix=f"wkill-{uuid.uuid4().hex[:8]}")  # fmt: skip
    total = await write_input(reference)
    assert await write_input(crashing) == total

    probe(dsn, "reference", "hold-merges")
    await run_to_the_end(reference, worker(reference, dsn, "reference", tmp_path, "ref"), total)

    probe(dsn, "crashed", "hold-merges")
    for kill in range(3):
        before = await committed(crashing)
        service = worker(crashing, dsn, "crashed", tmp_path, f"kill-{kill}", crash_at=2)
        service.process.wait(timeout=240)
        assert service.process.returncode == -signal.SIGKILL, service.output()
        assert "killing myself before commit 2" in service.output()
        if kill > 0:  # the batch the previous run inserted but did not commit is formed again
            assert "re-forming unfinished batch" in service.output(), service.output()
        assert before < await committed(crashing) < total
    final = worker(crashing, dsn, "crashed", tmp_path, "final")
    await run_to_the_end(crashing, final, total)
    assert "re-forming unfinished batch" in final.output()

    expected = json.loads(probe(dsn, "reference", "fingerprint"))
    actual = json.loads(probe(dsn, "crashed", "fingerprint"))
    assert all(rows > 0 for rows, _ in expected.values()), expected
    rows = {table: (expected[table][0], actual[table][0]) for table in ("events", "sessions")}
    same = actual == expected
    print(
        f"\nthree SIGKILLs between insert and commit over {total} records: rows "
        f"(uninterrupted, killed) {rows}; all tables' counts and checksums equal: {same}"
    )
    assert actual == expected


@pytest.fixture(autouse=True)
def _no_worker_outlives_the_test() -> Iterator[None]:
    yield
    for service in STARTED:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()
    STARTED.clear()
