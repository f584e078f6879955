"""End-to-end freshness: how long from a shop sending an event to the funnel seeing it, at a fixed
rate, through the collector, the broker, the sessionizer and the metrics worker.

    .venv/bin/python bench/e2e.py [--rates 200,500,800] [--seconds 20]

Starts a local broker, `klantreis ingest` and `klantreis sessionizer` as processes, and runs the
metrics worker in this process (chDB opens its data path in one process only, and this process
also watches the tables). Simulated visitors' events (ids set by the sender, event time left to
the collector, so it is now) are sent at each rate in requests of up to 10 events, 20 times a
second, after a 5-second warm-up at 100 events/s that is not reported. For every event that moved
a journey, the latency is from the start of the request that carried it to the first poll (every
50 ms) that finds its phase transition in ClickHouse's `phase_transitions` table, which the funnel
queries read. Prints, per rate, the rate reached and
p50/p95/max of that latency; the baseline in the same run is the collector's own answer time
(request start to 2xx), the floor under any end-to-end figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from contracts.settings import load_settings
from klantreis.local_kafka import LocalKafka, free_port
from klantreis.simulator import generate_journeys
from services.metrics.app import open_warehouse
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.worker import MetricsWorker

KLANTREIS = str(Path(sys.executable).with_name("klantreis"))
TICK = 0.05
PER_REQUEST = 10


def schedule(visitors: int) -> list[dict[str, Any]]:
    """Visitors' events interleaved in the order they happened, each visitor's kept in order."""
    events = []
    for journey in generate_journeys(seed=4, visitors=visitors, days=1):
        for event in journey:
            stamped = {key: value for key, value in event.items() if key != "timestamp"}
            events.append((event["timestamp"], {**stamped, "event_id": str(uuid.uuid4())}))
    events.sort(key=lambda entry: entry[0])
    return [event for _, event in events]


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def run_rate(
    base_url: str, events: list[dict[str, Any]], rate: int, seconds: float
) -> tuple[dict[str, float], list[float], float]:
    """Send `rate` events/s for `seconds`; return each event's send time, the request answer
    times, and the rate reached."""
    sent_at: dict[str, float] = {}
    answers: list[float] = []
    per_tick = max(1, round(rate * TICK))
    total = min(len(events), int(rate * seconds))
    requests: list[asyncio.Task[None]] = []

    async def post(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        for event in batch:
            sent_at[event["event_id"]] = started
        for attempt in range(3):  # as a tracker does: a dropped keep-alive connection is retried
            try:
                response = await client.post("/v1/events", json=batch, auth=("demo", ""))
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
        response.raise_for_status()
        answers.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        began = time.perf_counter()
        for tick, offset in enumerate(range(0, total, per_tick)):
            await asyncio.sleep(max(0.0, began + tick * TICK - time.perf_counter()))
            chunk = events[offset : offset + per_tick]
            for start in range(0, len(chunk), PER_REQUEST):
                requests.append(
                    asyncio.create_task(post(client, chunk[start : start + PER_REQUEST]))
                )
        await asyncio.gather(*requests)
        reached = total / (time.perf_counter() - began)
    return sent_at, answers, reached


def service(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [KLANTREIS, name], env={**os.environ, "KLANTREIS_INGEST_OPS_PORT": "0", **env},
        stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


async def main(rates: list[int], seconds: float) -> None:
    with LocalKafka() as broker, tempfile.TemporaryDirectory() as data:
        port = free_port()
        env = {
            "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KLANTREIS_TOPIC_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
            "KLANTREIS_SITES": json.dumps({"demo": "demo"}),
            "KLANTREIS_RATE_LIMIT_PER_IP": "1000000",
            "KLANTREIS_RATE_LIMIT_PER_SITE": "1000000",
            "KLANTREIS_SESSIONIZER_PORT": "0",
            "PORT": str(port),
        }
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=env["KLANTREIS_TOPIC_PREFIX"],
            clickhouse_dsn=f"chdb://{data}/chdb",
            flush_interval_seconds=0.2,
        )
        processes = [service("ingest", env, Path(data)), service("sessionizer", env, Path(data))]
        warehouse = open_warehouse(settings)
        stop = asyncio.Event()
        try:
            await wait_ready(f"http://127.0.0.1:{port}/readyz")
            async with MetricsWorker(
                settings, warehouse, WarehouseMetrics(CollectorRegistry())
            ) as worker:
                task = asyncio.create_task(worker.run(stop))
                events = schedule(visitors=(sum(rates) * int(seconds) + 500) // 4)
                # Warm up (group joins, first transactions, first inserts), not reported.
                await measure(warehouse, f"http://127.0.0.1:{port}", events[:500], 100, 5)
                offset = 500
                print(f"{'rate':>6} {'reached':>8} {'moved':>6} {'p50 ms':>8} {'p95 ms':>8} "
                      f"{'max ms':>8}   collector answer p50/p95 ms")  # fmt: skip
                for rate in rates:
                    batch = events[offset : offset + int(rate * seconds)]
                    offset += len(batch)
                    latencies, answers, reached = await measure(
                        warehouse, f"http://127.0.0.1:{port}", batch, rate, seconds
                    )
                    if not latencies:
                        print(f"{rate:>6} {reached:>8.0f}      0   (nothing reached the funnel)")
                        continue
                    print(
                        f"{rate:>6} {reached:>8.0f} {len(latencies):>6} "
                        f"{1000 * p(latencies, 50):>8.0f} {1000 * p(latencies, 95):>8.0f} "
                        f"{1000 * max(latencies):>8.0f}   "
                        f"{1000 * p(answers, 50):.0f}/{1000 * p(answers, 95):.0f}"
                    )
                stop.set()
                await task
        finally:
            warehouse.close()
            for process in processes:
                process.terminate()
                process.wait(timeout=30)


async def measure(
    warehouse: Any, base_url: str, events: list[dict[str, Any]], rate: int, seconds: float
) -> tuple[list[float], list[float], float]:
    seen: dict[str, float] = {}
    wanted = {e["event_id"] for e in events}
    # Event time is the collector's clock, so this run's transitions are the ones from now on.
    # (Asking for the run's ids by name instead parsed a list of thousands on every poll, and
    # the poll shares the engine with the worker's inserts.)
    since = datetime.now(UTC) - timedelta(seconds=1)
    sending = asyncio.create_task(run_rate(base_url, events, rate, seconds))

    async def poll() -> None:
        ids = await asyncio.to_thread(
            warehouse.query,
            "SELECT DISTINCT event_id FROM {database}.phase_transitions "
            "WHERE at >= {since:DateTime64(3)}",
            {"since": since},
        )
        now = time.perf_counter()
        for (event_id,) in ids:
            if event_id in wanted:
                seen.setdefault(event_id, now)

    while not sending.done():
        await poll()
        await asyncio.sleep(TICK)
    sent_at, answers, reached = sending.result()
    quiet_since = time.perf_counter()
    while time.perf_counter() - quiet_since < 10:  # until nothing new shows for 10 s
        before = len(seen)
        await poll()
        if len(seen) != before:
            quiet_since = time.perf_counter()
        await asyncio.sleep(TICK)
    return [seen[i] - sent_at[i] for i in seen], answers, reached


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,500,800")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    asyncio.run(main([int(rate) for rate in args.rates.split(",")], args.seconds))
