"""Whether readers slow the embedded collector down: ingest latency under 32 concurrent readers
of `/api/v1/metrics`, against the same writer with no reader, measured in the same run.

    .venv/bin/python bench/embedded_reads.py [--readers 32] [--seconds 20] [--visitors 2000]

Starts `klantreis up` (chDB under a temporary directory) as a user does, sends `--visitors`
simulated visitors so the figures have rows to read, then runs one writer posting one page
view at a time, 20 a second, for `--seconds` (idle), and again while `--readers` clients each
read the shop metrics in a loop (loaded). Embedded, the collector answers after the insert, so
each write waits for the next flush (`KLANTREIS_FLUSH_INTERVAL_SECONDS`). The target is a
loaded p99 within 2x of the idle one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from klantreis.local_kafka import free_port
from klantreis.simulator import generate_journeys, send_journeys

KLANTREIS = str(Path(sys.executable).with_name("klantreis"))
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def write_for(base: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, auth=("demo", ""), timeout=30) as http:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            started = time.monotonic()
            event = [{"type": "page", "anonymous_id": f"w-{uuid.uuid4().hex[:8]}"}]
            response = await http.post("/v1/events", json=event)
            response.raise_for_status()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
    return latencies


async def read_until(base: str, stop: asyncio.Event, answered: list[float]) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        while not stop.is_set():
            started = time.monotonic()
            response = await http.get("/api/v1/metrics", params={"site": "demo"})
            response.raise_for_status()
            answered.append(time.monotonic() - started)


def summary(name: str, latencies: list[float]) -> str:
    return (
        f"{name}: {len(latencies)} writes, p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )


async def measure(base: str, readers: int, seconds: float) -> None:
    idle = await write_for(base, seconds)
    stop = asyncio.Event()
    reads: list[float] = []
    reading = [asyncio.create_task(read_until(base, stop, reads)) for _ in range(readers)]
    await asyncio.sleep(1)  # every reader has a query in flight
    loaded = await write_for(base, seconds)
    stop.set()
    await asyncio.gather(*reading)
    print(summary("idle (baseline)", idle))
    print(summary(f"under {readers} readers", loaded))
    print(
        f"reads: {len(reads)} in {seconds + 1:.0f}s, p50 {statistics.median(reads) * 1000:.0f} ms"
    )
    print(f"ratio loaded / idle p99: {percentile(loaded, 0.99) / percentile(idle, 0.99):.2f}")


def main(readers: int, seconds: float, visitors: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "PORT": str(port),
            "KLANTREIS_DATA_DIR": data,
            "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
            "KLANTREIS_RATE_LIMIT_PER_IP": "0",
        }
        env.pop("KLANTREIS_KAFKA_BOOTSTRAP_SERVERS", None)
        log = Path(data) / "up.log"
        server = subprocess.Popen(
            [KLANTREIS, "up"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            report = asyncio.run(send_journeys(base, "demo", generate_journeys(5, visitors, 14)))
            print(f"loaded {report.as_dict()}")
            asyncio.run(measure(base, readers, seconds))
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--visitors", type=int, default=2000)
    args = parser.parse_args()
    main(args.readers, args.seconds, args.visitors)
