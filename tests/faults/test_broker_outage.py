"""Fault 1: the whole pipeline (`klantreis ingest`, `sessionizer`, `metrics`, as processes)
under a steady load while the broker is killed (SIGKILL) and, a while later, started again.

Every event the collector answered 2xx is in ClickHouse exactly once; while the broker is away
the collector refuses within 2 s; the sessionizer and the metrics worker never exit: they
start again from their last commit when Kafka comes back. KLANTREIS_FAULT_OUTAGE_SECONDS sets
the outage (10 s here; `bench/soak.py --outage 60` runs the long form). Midway, the sessionizer
is SIGKILLed and started again while the broker is still away: it waits for Kafka.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from klantreis.local_kafka import LocalKafka, free_port
from tests.support.pipeline import ADMIN_TOKEN, SITE, WRITE_KEY
from tests.support.processes import Service, start, wait_for_http
from tests.support.warehouse_probe import probe

OUTAGE_SECONDS = float(os.environ.get("KLANTREIS_FAULT_OUTAGE_SECONDS", "10"))
BATCH = 5
PAUSE = 0.05  # about 100 events a second


class Load:
    """A tracker sending batches of fresh events as fast as `PAUSE` allows, noting what was
    acknowledged and how long each refusal took."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.acknowledged: list[str] = []
        self.statuses: Counter[int | str] = Counter()
        self.slowest_refusal = 0.0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, auth=(WRITE_KEY, ""), timeout=10) as http:
            visitor = 0
            while not self.stop.is_set():
                visitor += 1
                body = [
                    {"type": "page", "anonymous_id": f"v-{visitor}", "event_id": str(uuid.uuid4())}
                    for _ in range(BATCH)
                ]
                started = time.monotonic()
                try:
                    response = await http.post("/v1/events", json=body)
                except httpx.TransportError as exc:
                    self.statuses[type(exc).__name__] += 1
                else:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.acknowledged.extend(event["event_id"] for event in body)
                    else:
                        took = time.monotonic() - started
                        self.slowest_refusal = max(self.slowest_refusal, took)
                await asyncio.sleep(PAUSE)


def rows_written(ops_port: int) -> float:
    exposition = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).text
    for line in exposition.splitlines():
        if line.startswith('klantreis_warehouse_rows_written_total{table="events"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def alive(services: list[Service]) -> None:
    for service in services:
        code = service.process.poll()
        assert code is None, f"{service.name} exited with {code}:\n{service.output()[-3000:]}"


async def test_a_broker_outage_loses_and_doubles_nothing_and_no_service_exits(
    tmp_path: Path,
) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka")
    broker.start()
    dsn, database = f"chdb://{tmp_path / 'chdb'}", "outage"
    probe(dsn, database, "hold-merges")  # duplicates stay visible as rows
    ingest_port, api_port, api_ops = free_port(), free_port(), free_port()
    env = {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KLANTREIS_TOPIC_PREFIX": "outage",
        "KLANTREIS_TOPIC_PARTITIONS": "3",
        "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
        "KLANTREIS_DATA_DIR": str(tmp_path / "var"),
        "KLANTREIS_CLICKHOUSE_DSN": dsn,
        "KLANTREIS_CLICKHOUSE_DATABASE": database,
        "KLANTREIS_SESSIONIZER_PORT": "0",
        "KLANTREIS_FLUSH_INTERVAL_SECONDS": "0.3",
        "KLANTREIS_RATE_LIMIT_PER_IP": "0",
        "PORT": str(ingest_port),
        "KLANTREIS_API_PORT": str(api_port),
        "KLANTREIS_API_OPS_PORT": str(api_ops),
        "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    services = [start(name, [name], env, tmp_path) for name in ("metrics", "sessionizer", "ingest")]
    try:
        base = f"http://127.0.0.1:{ingest_port}"
        wait_for_http(f"{base}/readyz", services[2])
        wait_for_http(f"http://127.0.0.1:{api_ops}/healthz", services[0])
        load = Load(base)
        sending = asyncio.create_task(load.run())
        await asyncio.sleep(5)
        broker.kill()
        outage_began = time.monotonic()
        await asyncio.sleep(min(5.0, OUTAGE_SECONDS / 2))
        # The sessionizer crashes too, and its supervisor starts it while Kafka is still away:
        # it must wait for Kafka, not exit.
        services[1].process.kill()
        services[1].process.wait()
        services[1] = start("sessionizer", ["sessionizer"], env, tmp_path, name="sessionizer-2")
        while time.monotonic() - outage_began < OUTAGE_SECONDS:
            await asyncio.sleep(1)
            alive(services)
        await asyncio.to_thread(broker.start)
        await asyncio.sleep(10)  # the load goes on while the services find Kafka again
        load.stop.set()
        await sending
        print(
            f"\nbroker away {OUTAGE_SECONDS:.0f}s under load: {dict(load.statuses)}; "
            f"slowest refusal {load.slowest_refusal:.2f}s"
        )

        deadline = time.monotonic() + 120
        while rows_written(api_ops) < len(load.acknowledged):
            alive(services)
            assert time.monotonic() < deadline, services[1].output()[-3000:]
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a repeat written late would still arrive now
        alive(services)
        restarts = {s.name: s.output().count("lost Kafka") for s in services[:2]}
        print(f"fresh starts from the last commit: {restarts}")
        assert restarts["sessionizer"] > 0  # the one started during the outage waited
    finally:
        stopped = {service.name: service.stop() for service in reversed(services)}
        broker.stop()
    assert stopped == dict.fromkeys(("ingest", "sessionizer", "metrics"), True), stopped

    stored: dict[str, int] = json.loads(probe(dsn, database, "event-ids"))
    assert load.statuses[200] > 0 and load.statuses[503] > 0, load.statuses
    assert load.slowest_refusal < 2.0
    missing = [event_id for event_id in load.acknowledged if event_id not in stored]
    doubled = {event_id: n for event_id, n in stored.items() if n > 1}
    print(f"acknowledged {len(load.acknowledged)}, stored {len(stored)}, missing "
          f"{len(missing)}, stored twice or more {len(doubled)}")  # fmt: skip
    assert missing == [] and doubled == {}
