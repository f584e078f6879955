"""deploy/nginx/nginx.conf, run by Debian's nginx in front of `klantreis ingest` as compose runs
it: events pass through, and a client cannot hide behind a made-up X-Forwarded-For, because
the edge replaces it and the collector trusts exactly that one hop."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import WRITE_KEY
from tests.support.processes import collector

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "nginx" / "nginx.conf"


@contextmanager
def edge(collector_url: str, workdir: Path) -> Iterator[str]:
    """nginx with the shipped configuration; only the addresses differ from compose's."""
    port = free_port()
    text = CONFIG.read_text()
    for compose, here in (
        ("server ingest:8080;", f"server {collector_url.removeprefix('http://')};"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
    ):
        assert compose in text, compose
        text = text.replace(compose, here)
    config = workdir / "nginx.conf"
    config.write_text(text)
    directives = f"daemon off; pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log;"
    command = ["nginx", "-c", str(config), "-p", str(workdir), "-g", directives]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_edge_passes_events_and_keeps_the_per_client_limit(
    settings: Settings, tmp_path: Path
) -> None:
    with (
        collector(
            settings,
            tmp_path,
            KLANTREIS_FORWARDED_FOR_HOPS="1",
            KLANTREIS_RATE_LIMIT_PER_IP="5",
        ) as inner,
        edge(inner, tmp_path) as outer,
        httpx.Client(base_url=outer, auth=(WRITE_KEY, ""), timeout=10) as client,
    ):
        statuses: Counter[int] = Counter()
        for n in range(40):
            event = [{"type": "page", "anonymous_id": f"v-{n}", "event_id": str(uuid.uuid4())}]
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}, 198.51.100.{n}"}
            statuses[client.post("/v1/events", json=event, headers=spoofed).status_code] += 1
        print(f"\n40 fast requests with made-up X-Forwarded-For through the edge: {statuses}")
        # A burst of twice the rate passes; the rest is this one client, however it signs.
        assert statuses[200] >= 10 and statuses[429] >= 20, statuses
        assert set(statuses) == {200, 429}
