"""`make run-kafka`: the production layout on one machine.

A local KRaft broker and the three services as separate processes (collector on :8080, read API
on :8082, sessionizer metrics on :8081), with the embedded ClickHouse under var/. A service that
exits is restarted, as compose's restart policy does. Ctrl-C stops the services first, then the
broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from contracts.settings import load_settings
from klantreis.local_kafka import LocalKafka
from klantreis.quickstart import ADMIN_TOKEN_FILE, admin_token

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    settings = load_settings()
    data_dir = Path(settings.data_dir).resolve()
    broker = LocalKafka(data_dir=data_dir / "kafka")
    klantreis = str(Path(sys.executable).with_name("klantreis"))
    env = {
        **os.environ,
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KLANTREIS_DATA_DIR": str(data_dir),
        "KLANTREIS_SITES": os.environ.get("KLANTREIS_SITES", json.dumps({"demo": "demo"})),
        # On one machine, as `make run`: the admin token is made once and kept in var/.
        "KLANTREIS_ADMIN_TOKEN": admin_token(settings),
    }
    env.pop("KLANTREIS_ADMIN_TOKEN_FILE", None)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with broker:
        print(f"kafka: {broker.bootstrap_servers} (data in {broker.dir})", flush=True)
        names = ("metrics", "sessionizer", "ingest")
        services = {name: subprocess.Popen([klantreis, name], env=env, cwd=ROOT) for name in names}
        print(
            f"collector: http://{settings.host}:{settings.port}  "
            f"read API: http://{settings.host}:{settings.api_port}/api/v1/funnel?site=demo "
            f"(admin token in {data_dir / ADMIN_TOKEN_FILE}, or KLANTREIS_ADMIN_TOKEN; "
            "`klantreis sites add-token demo` issues a read token)",
            flush=True,
        )
        restarts = Restarts()
        try:
            while not stopping:
                for name, service in services.items():
                    code = service.poll()
                    if code is None or stopping:
                        continue
                    delay = restarts.after_exit(name, time.monotonic())
                    print(f"{name} exited with {code}; restarting in {delay:.0f}s", flush=True)
                    time.sleep(delay)
                    services[name] = subprocess.Popen([klantreis, name], env=env, cwd=ROOT)
                time.sleep(0.5)
        finally:
            for service in reversed(services.values()):
                if service.poll() is None:
                    service.send_signal(signal.SIGTERM)
            for service in services.values():
                service.wait(timeout=60)


class Restarts:
    """As an orchestrator restarts a crashed service: at once the first time, then waiting twice
    as long after each exit that follows within a minute of the last, up to 30 s."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def after_exit(self, name: str, now: float) -> float:
        then, delay = self._last.get(name, (-1e9, 0.0))
        delay = min(30.0, max(1.0, delay * 2)) if now - then < 60 else 0.0
        self._last[name] = (now, delay)
        return delay


if __name__ == "__main__":
    main()
