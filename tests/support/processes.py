"""Running klantreis commands as real processes, the way an operator starts them."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import ADMIN_TOKEN, SITE, WRITE_KEY

KLANTREIS = str(Path(sys.executable).with_name("klantreis"))
CLEAN_STOP_LINES = ("Application shutdown complete", "sessionizer stopped cleanly")


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM, as an orchestrator stops a service; True if it shut down cleanly.

        Clean means: it exited with 0, or re-raised the SIGTERM after its shutdown completed (as
        uvicorn does), and its log shows the shutdown finished.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"{self.name} did not stop on SIGTERM:\n{self.output()}"
                ) from None
        finished = any(line in self.output() for line in CLEAN_STOP_LINES)
        return self.process.returncode in (0, -signal.SIGTERM) and finished


def services_env(
    settings: Settings,
    data: Path,
    *,
    ingest_port: int,
    api_port: int,
    ingest_ops: int,
    api_ops: int,
    sessionizer_ops: int = 0,
) -> dict[str, str]:
    """The environment of `klantreis ingest`, `sessionizer` and `metrics` as separate processes
    on the test's topics, for site SITE with WRITE_KEY and the test admin token."""
    return {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
        "KLANTREIS_TOPIC_PARTITIONS": "3",
        "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
        "KLANTREIS_DATA_DIR": str(data),
        "KLANTREIS_SESSIONIZER_PORT": str(sessionizer_ops),
        "KLANTREIS_FLUSH_INTERVAL_SECONDS": "0.2",
        "PORT": str(ingest_port),
        "KLANTREIS_API_PORT": str(api_port),
        "KLANTREIS_INGEST_OPS_PORT": str(ingest_ops),
        "KLANTREIS_API_OPS_PORT": str(api_ops),
        "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
    }


def start(
    service: str,
    args: list[str],
    env: dict[str, str],
    logs: Path,
    file_limit: int | None = None,
    name: str | None = None,
) -> Service:
    """The command as its own process; `file_limit` is the descriptor limit it gets, as a
    container's (often 1,024). Its log is `<name>.log` (by default the service's)."""
    name = name or service
    log = logs / f"{name}.log"

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    # Each process its own operators' ports, so services side by side never share one.
    operators = {
        "KLANTREIS_INGEST_OPS_PORT": str(free_port()),
        "KLANTREIS_API_OPS_PORT": str(free_port()),
    }
    process = subprocess.Popen(
        [KLANTREIS, *args],
        env={**os.environ, **operators, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=limit_files,
    )
    return Service(service, process, log)


def wait_for_http(url: str, service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"{service.name} exited early:\n{service.output()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s:\n{service.output()}")


@contextmanager
def collector(
    settings: Settings, logs: Path, file_limit: int | None = None, **env: str
) -> Iterator[str]:
    """`klantreis ingest` on the test's topics, for site SITE with WRITE_KEY; yields its URL."""
    port = free_port()
    service = start(
        "ingest",
        ["ingest"],
        {
            "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
            "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
            "KLANTREIS_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
            "PORT": str(port),
            **env,
        },
        logs,
        file_limit,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", service)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert service.stop(), service.output()
