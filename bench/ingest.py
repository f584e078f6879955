"""Collector throughput against a bare ASGI endpoint, in one run on a real local broker.

    .venv/bin/python bench/ingest.py [--seconds 8] [--connections 32]

Needs `wrk` (Debian: apt-get install wrk) as the load generator, so the client is not the
bottleneck. For one event per request and for batches of 20, it loads first a bare ASGI endpoint
(uvicorn, one worker: read the body, parse the JSON, drop it, answer 200), then the same do-nothing
route in FastAPI (the framework's own floor: what any FastAPI route costs before it does any
work), then the collector (one worker: authenticate, validate, enrich, produce to Kafka with
acks=all and wait for the acknowledgement). Every server is a single process, so each uses at
most one core. Prints events/s, p50 and p99 latency, and the ratios to the bare endpoint.

Last, with no HTTP at all, two ceilings no collector built on these libraries can pass: the
Kafka client's, sending the same event with the collector's producer settings in groups of 20
and waiting for every acknowledgement; and the event model's, validating the parsed event and
serialising it for Kafka (pydantic). Each as events/s and microseconds of CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from contracts.events import Event
from contracts.kafka import ensure_topics, new_producer
from contracts.settings import Settings, load_settings
from klantreis.local_kafka import LocalKafka, free_port

HERE = Path(__file__).resolve().parent
EVENT = {
    "type": "track",
    "event": "Product Viewed",
    "anonymous_id": "3f1f9f0e-6a4b-4f2e-9a57-2b8c1d3e4f5a",
    "timestamp": "2026-06-01T12:00:00.000Z",
    "sent_at": "2026-06-01T12:00:00.100Z",
    "properties": {"product_id": "tv-55", "price": 899.0, "currency": "EUR"},
    "context": {
        "page": {"url": "https://shop.example/p/tv-55?utm_source=google&utm_medium=cpc",
                 "path": "/p/tv-55", "referrer": "https://www.google.com/", "title": "TV"},
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "locale": "nl-NL",
    },
}  # fmt: skip


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: what any HTTP JSON endpoint must do at least (run by uvicorn)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        json.loads(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"accepted":1}'})


framework_app = FastAPI()


@framework_app.post("/")
async def framework_floor(request: Request) -> Response:
    """The bare endpoint's work as a FastAPI route."""
    orjson.loads(await request.body())
    return Response(b'{"accepted":1}', media_type="application/json")


def bench_event() -> dict[str, Any]:
    return {**EVENT, "site_id": "bench", "event_id": "e", "received_at": EVENT["sent_at"]}


def validation_ceiling(events: int = 20_000) -> tuple[float, float]:
    """(events/s, CPU microseconds per event) of decoding the event into the record type and
    encoding it again."""
    parsed = orjson.dumps(bench_event())
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(events):
        Event.from_bytes(parsed).to_bytes()
    return events / (time.perf_counter() - wall), (time.process_time() - cpu) / events * 1e6


async def kafka_ceiling(
    settings: Settings, rounds: int = 100, size: int = 20
) -> tuple[float, float]:
    """(events/s, CPU microseconds per event) of producing the bench event with acks=all and
    waiting for the acknowledgements, `size` per group, 64 groups in flight."""
    record = Event.from_bytes(orjson.dumps(bench_event())).to_bytes()
    topic = settings.topics.events
    producer = new_producer(settings)
    await producer.start()

    async def group(visitor: int) -> None:
        acks = [await producer.send(topic, record, key=b"bench/%d-%d" % (visitor, i))
                for i in range(size)]  # fmt: skip
        await asyncio.gather(*acks)

    try:
        await asyncio.gather(*(group(-v) for v in range(64)))  # warm up connections
        wall, cpu = time.perf_counter(), time.process_time()
        for r in range(rounds):
            await asyncio.gather(*(group(r * 64 + v) for v in range(64)))
        events = rounds * 64 * size
        return events / (time.perf_counter() - wall), (time.process_time() - cpu) / events * 1e6
    finally:
        await producer.stop()


def serve(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code < 500:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start:\n{log.read_text()}")


def load(url: str, body: bytes, seconds: int, connections: int, work: Path) -> dict[str, float]:
    script = work / f"post-{uuid.uuid4().hex}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Basic YmVuY2g6"\n'  # "bench:"
        f"wrk.body = {json.dumps(body.decode())}\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,'
        " latency:percentile(50), latency:percentile(99), summary.errors.status))\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if match is None:
        raise RuntimeError(out)
    requests, micros, p50, p99, bad = map(int, match.groups())
    return {"rps": requests / (micros / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "non_2xx": bad}  # fmt: skip


def main(seconds: int, connections: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py needs wrk as its load generator: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="klantreis-bench-"))
    python = sys.executable
    with LocalKafka() as broker:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            topic_partitions=6,
        )
        asyncio.run(ensure_topics(settings))
        bare_port, framework_port, collector_port = free_port(), free_port(), free_port()
        bare, framework = (
            serve(
                [
                    python,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(HERE),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    f"ingest:{app}",
                ],
                port,
                {},
                work / f"{app}.log",
            )  # fmt: skip
            for app, port in (("bare_app", bare_port), ("framework_app", framework_port))
        )
        collector = serve(
            [str(Path(python).with_name("klantreis")), "ingest"],
            collector_port,
            {
                "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
                "KLANTREIS_SITES": json.dumps({"bench": "bench"}),
                "KLANTREIS_RATE_LIMIT_PER_IP": "0",
                "KLANTREIS_RATE_LIMIT_PER_SITE": "0",
                "PORT": str(collector_port),
            },
            work / "collector.log",
        )
        rows = []
        try:
            for size in (1, 20):
                body = json.dumps([EVENT] * size if size > 1 else EVENT).encode()
                base = load(f"http://127.0.0.1:{bare_port}/", body, seconds, connections, work)
                floor = load(
                    f"http://127.0.0.1:{framework_port}/", body, seconds, connections, work
                )
                ours = load(
                    f"http://127.0.0.1:{collector_port}/v1/events", body, seconds, connections, work
                )
                rows.append((size, base, floor, ours))
        finally:
            for process in (collector, framework, bare):
                process.terminate()
                process.wait(timeout=30)
        ceiling, cpu_per_event = asyncio.run(kafka_ceiling(settings))

    print(f"wrk, 1 thread, {connections} connections, {seconds}s per run; one core per server")
    print(f"{'events/request':>15} {'endpoint':>10} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for size, base, floor, ours in rows:
        for name, result in (("bare", base), ("fastapi", floor), ("collector", ours)):
            print(
                f"{size:>15} {name:>10} {result['rps'] * size:>10,.0f} "
                f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f}"
                + (f"  ({result['non_2xx']:.0f} non-2xx)" if result["non_2xx"] else "")
            )
        for name, result in (("fastapi", floor), ("collector", ours)):
            print(f"{size:>15} {name + ' / bare':>18} {result['rps'] / base['rps']:>6.2f}")
    validated, cpu_per_validation = validation_ceiling()
    print("ceilings without HTTP:")
    print(f"  Kafka client (aiokafka send, acks=all, groups of 20): {ceiling:>9,.0f} events/s, "
          f"{cpu_per_event:5.1f} us CPU per event")  # fmt: skip
    print(f"  event model (pydantic validate + serialise):           {validated:>9,.0f} events/s, "
          f"{cpu_per_validation:5.1f} us CPU per event")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    main(args.seconds, args.connections)
