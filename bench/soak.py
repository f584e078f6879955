"""The whole pipeline under a steady load for a long time, one site sending ten times its quota:
nothing lost or doubled, the hot site throttled, the others unaffected, memory flat.

    .venv/bin/python bench/soak.py [--minutes 10] [--baseline-minutes 2] [--outage 0] [--json]

Starts a local broker, `klantreis ingest`, `klantreis sessionizer` and `klantreis metrics`
(chDB) as processes, with four sites and a quota of 50 events a second per site, each site's
events from a fixed population of 500 visitors (so the sessionizer's state stops growing once
all have come, and RSS shows leaks, not new customers). Two baselines of `--baseline-minutes`
each: three sites sending 20 events a second, then the same with the hot site sending exactly its
quota. Then the soak: the three plus the hot site sending 500 a second (10x its quota) for
`--minutes`; with `--outage S`, the broker is SIGKILLed for S seconds in the middle of it. Prints
the normal sites' write p50/p99 and the hot site's answers; the ratio of the normal sites' p99 in
the soak to the first baseline (target: within 1.2) and to the second (what the excess beyond
the quota costs the others); the RSS of every process at the start and the end of the soak; and,
after the pipeline has stored everything, the events answered 2xx that are missing from
ClickHouse or stored twice (target: 0 and 0). `--json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from klantreis.local_kafka import LocalKafka, free_port

ROOT = Path(__file__).resolve().parents[1]
KLANTREIS = str(Path(sys.executable).with_name("klantreis"))
ADMIN_TOKEN = "soak-admin-" + uuid.uuid4().hex
QUOTA = 50.0  # events a second per site
NORMAL_RATE, HOT_RATE, BATCH = 20.0, 500.0, 10
VISITORS = 500  # per site
NORMAL_SITES = ("north", "east", "west")
HOT_SITE = "hot"


@dataclass
class Sender:
    """One site's tracker traffic: batches of fresh events at a steady rate."""

    site: str
    rate: float
    acknowledged: list[str] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    async def run(self, base: str, stop: asyncio.Event) -> None:
        interval = BATCH / self.rate
        async with httpx.AsyncClient(base_url=base, auth=(self.site, ""), timeout=10) as http:
            due = time.monotonic()
            while not stop.is_set():
                body = [
                    {"type": "page", "anonymous_id": f"{self.site}-{random.randrange(VISITORS)}",
                     "event_id": str(uuid.uuid4())}
                    for _ in range(BATCH)
                ]  # fmt: skip
                started = time.monotonic()
                try:
                    response = await http.post("/v1/events", json=body)
                except httpx.TransportError as exc:
                    self.statuses[type(exc).__name__] += 1
                else:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.acknowledged.extend(e["event_id"] for e in body)
                self.latencies.append(time.monotonic() - started)
                due += interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def send(base: str, senders: list[Sender], seconds: float, broker: LocalKafka | None,
               outage: float) -> None:  # fmt: skip
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sender.run(base, stop)) for sender in senders]
    if broker is not None and outage:
        await asyncio.sleep(max(0.0, (seconds - outage) / 2))
        broker.kill()
        await asyncio.sleep(outage)
        await asyncio.to_thread(broker.start)
        await asyncio.sleep(max(0.0, (seconds - outage) / 2))
    else:
        await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)


def normal_p99(senders: list[Sender]) -> float:
    return percentile([t for s in senders if s.site != HOT_SITE for t in s.latencies], 0.99)


def rows_written(ops_port: int) -> float:
    exposition = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).text
    for line in exposition.splitlines():
        if line.startswith('klantreis_warehouse_rows_written_total{table="events"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def probe(dsn: str, database: str, action: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.warehouse_probe", dsn, database, action],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(done.stdout) if done.stdout.strip() else None


def start(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [KLANTREIS, name], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def soak(minutes: float, baseline_minutes: float, outage: float, data: Path) -> dict[str, Any]:
    broker = LocalKafka(data_dir=data / "kafka")
    broker.start()
    dsn, database = f"chdb://{data / 'chdb'}", "soak"
    probe(dsn, database, "hold-merges")  # duplicates stay visible as rows
    port, api_port, api_ops, ingest_ops = (free_port() for _ in range(4))
    env = {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KLANTREIS_SITES": json.dumps({site: site for site in (*NORMAL_SITES, HOT_SITE)}),
        "KLANTREIS_RATE_LIMIT_PER_SITE": str(QUOTA), "KLANTREIS_RATE_LIMIT_PER_IP": "0",
        "KLANTREIS_DATA_DIR": str(data / "var"), "KLANTREIS_CLICKHOUSE_DSN": dsn,
        "KLANTREIS_CLICKHOUSE_DATABASE": database, "KLANTREIS_SESSIONIZER_PORT": "0",
        "PORT": str(port), "KLANTREIS_API_PORT": str(api_port),
        "KLANTREIS_API_OPS_PORT": str(api_ops), "KLANTREIS_INGEST_OPS_PORT": str(ingest_ops),
        "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
    }  # fmt: skip
    services = {name: start(name, env, data) for name in ("metrics", "sessionizer", "ingest")}
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {}
    try:
        wait_for(f"{base}/readyz")
        wait_for(f"http://127.0.0.1:{api_ops}/healthz")
        baseline = [Sender(site, NORMAL_RATE) for site in NORMAL_SITES]
        at_quota = [Sender(site, NORMAL_RATE) for site in NORMAL_SITES]
        quota_hot = Sender(HOT_SITE, QUOTA)
        if baseline_minutes:
            asyncio.run(send(base, baseline, baseline_minutes * 60, None, 0))
            asyncio.run(send(base, [*at_quota, quota_hot], baseline_minutes * 60, None, 0))
        rss_start = {name: rss_mib(p.pid) for name, p in services.items()}
        loaded = [Sender(site, NORMAL_RATE) for site in NORMAL_SITES]
        hot = Sender(HOT_SITE, HOT_RATE)
        asyncio.run(send(base, [*loaded, hot], minutes * 60, broker, outage))
        rss_end = {name: rss_mib(p.pid) for name, p in services.items()}
        exited = {name: p.poll() for name, p in services.items() if p.poll() is not None}
        senders = [*baseline, *at_quota, quota_hot, *loaded, hot]
        acknowledged = [event_id for s in senders for event_id in s.acknowledged]
        deadline = time.monotonic() + 300
        while rows_written(api_ops) < len(acknowledged) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        result = {
            "minutes": minutes, "baseline_minutes": baseline_minutes, "outage_seconds": outage,
            "normal_p50_ms": percentile([t for s in loaded for t in s.latencies], 0.5) * 1000,
            "normal_p99_ms": normal_p99(loaded) * 1000,
            "baseline_p99_ms": normal_p99(baseline) * 1000 if baseline_minutes else None,
            "at_quota_p99_ms": normal_p99(at_quota) * 1000 if baseline_minutes else None,
            "normal_statuses": dict(sum((s.statuses for s in loaded), Counter())),
            "hot_statuses": dict(hot.statuses),
            "rss_mib_start": rss_start, "rss_mib_end": rss_end, "exited": exited,
            "acknowledged": len(acknowledged),
        }  # fmt: skip
    finally:
        for process in reversed(list(services.values())):
            process.terminate()
        for process in services.values():
            process.wait(timeout=60)
        broker.stop()
    stored: dict[str, int] = probe(dsn, database, "event-ids")
    result["missing"] = sum(1 for e in acknowledged if e not in stored)
    result["stored_twice"] = sum(1 for n in stored.values() if n > 1)
    return result


def report(result: dict[str, Any]) -> None:
    if result["baseline_p99_ms"]:
        print(f"baseline, 3 sites at {NORMAL_RATE:.0f} events/s: p99 "
              f"{result['baseline_p99_ms']:.0f} ms; with the hot site at its quota: p99 "
              f"{result['at_quota_p99_ms']:.0f} ms")  # fmt: skip
    print(f"soak {result['minutes']:g} min with the hot site at {HOT_RATE:.0f} events/s "
          f"(quota {QUOTA:.0f}): others p50 {result['normal_p50_ms']:.0f} ms, p99 "
          f"{result['normal_p99_ms']:.0f} ms, answers {result['normal_statuses']}; hot site "
          f"answers {result['hot_statuses']}")  # fmt: skip
    if result["baseline_p99_ms"]:
        ratio = result["normal_p99_ms"] / result["baseline_p99_ms"]
        print(f"ratio others' p99 with / without the hot site: {ratio:.2f}")
        excess = result["normal_p99_ms"] / result["at_quota_p99_ms"]
        print(f"ratio others' p99 with the hot site at 10x / at 1x its quota: {excess:.2f}")
    for name, start_mib in result["rss_mib_start"].items():
        print(f"RSS {name}: {start_mib:.0f} MiB at the start, "
              f"{result['rss_mib_end'][name]:.0f} MiB at the end")  # fmt: skip
    exited = result["exited"] or "none"
    print(f"acknowledged {result['acknowledged']} events; missing {result['missing']}, "
          f"stored twice {result['stored_twice']}; exited: {exited}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--baseline-minutes", type=float, default=2)
    parser.add_argument("--outage", type=float, default=0, help="seconds the broker is away")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        outcome = soak(args.minutes, args.baseline_minutes, args.outage, Path(directory))
    if args.json:
        print(json.dumps(outcome))
    else:
        report(outcome)
