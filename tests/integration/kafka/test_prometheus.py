"""The alerting rules ops teams load, checked by promtool and by a real Prometheus server
(Debian's `prometheus` package) scraping the three services as separate processes."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import SITE, WRITE_KEY
from tests.support.processes import Service, services_env, start, wait_for_http

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
JOBS = ("klantreis-ingest", "klantreis-sessionizer", "klantreis-metrics")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make system-tools` installs Debian's prometheus"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=DEPLOY, check=False)


def test_the_rules_and_config_are_valid_and_their_unit_tests_pass() -> None:
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", *map(str, sorted((DEPLOY / "rules").glob("*.yml")))),
        ("test", "rules", *map(str, sorted((DEPLOY / "tests").glob("*.yml")))),
    ):
        checked = promtool(*args)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_a_runbook_section() -> None:
    operations = (DEPLOY.parents[1] / "docs" / "operations.md").read_text()
    rules = yaml.safe_load((DEPLOY / "rules" / "klantreis.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 9
    for alert in alerts:
        assert f"### {alert['alert']}\n" in operations, alert["alert"]
        assert alert["annotations"]["runbook"] == f"docs/operations.md#{alert['alert'].lower()}"


def eventually(read: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := read()):
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.5)
    return value


def test_a_real_prometheus_scrapes_every_service_and_evaluates_the_rules(
    settings: Settings, tmp_path: Path
) -> None:
    ingest_port, api_port, ingest_ops, sessionizer_ops, api_ops, web = (
        free_port() for _ in range(6)
    )
    env = services_env(
        settings, tmp_path / "var",
        ingest_port=ingest_port, api_port=api_port, ingest_ops=ingest_ops, api_ops=api_ops,
        sessionizer_ops=sessionizer_ops,
    )  # fmt: skip
    # The shipped scrape jobs and rules, pointed at these processes and read every second.
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "rules" / "*.yml")]
    ports = dict(zip(JOBS, (ingest_ops, sessionizer_ops, api_ops), strict=True))
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus_binary = shutil.which("prometheus")
    assert prometheus_binary, "prometheus is missing: `make system-tools` installs it"

    services = [
        start("metrics", ["metrics"], env, tmp_path),
        start("sessionizer", ["sessionizer"], env, tmp_path),
        start("ingest", ["ingest"], env, tmp_path),
    ]
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prometheus = Service("prometheus", server, tmp_path / "prometheus.log")
    base = f"http://127.0.0.1:{web}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{base}/query", params={"query": expr}).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    try:
        wait_for_http(f"http://127.0.0.1:{ingest_port}/readyz", services[2])
        wait_for_http(f"http://127.0.0.1:{web}/-/ready", prometheus)
        events = [{"type": "page", "anonymous_id": f"v{n}"} for n in range(20)]
        sent = httpx.post(
            f"http://127.0.0.1:{ingest_port}/v1/events", json=events, auth=(WRITE_KEY, "")
        )
        assert sent.json() == {"accepted": 20}

        up = eventually(lambda: len(query('up{job=~"klantreis-.*"} == 1')) == 3 and query("up"))
        assert {sample["metric"]["job"] for sample in up} == set(JOBS)
        # Each service's own series, as it counted this traffic.
        for expr in (
            f'klantreis_ingest_events_accepted_total{{site="{SITE}"}} == 20',
            "klantreis_sessionizer_events_processed_total == 20",
            'klantreis_warehouse_rows_written_total{table="events"} == 20',
        ):
            assert eventually(functools.partial(query, expr)), expr
        # The recording rules evaluate over the real series.
        lag = eventually(lambda: query("klantreis:consumer_lag:sum"))
        assert "sessionizer-identities" in {sample["metric"]["consumer"] for sample in lag}
        groups = httpx.get(f"{base}/rules").json()["data"]["groups"]
        health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
        assert len(health) >= 16 and set(health.values()) == {"ok"}, health

        # A service gone: its target is down, and the alert waits out its minute.
        assert services[2].stop()
        assert eventually(lambda: query('up{job="klantreis-ingest"} == 0'))

        def pending() -> list[dict[str, Any]]:
            alerts = httpx.get(f"{base}/alerts").json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "KlantreisServiceDown"]

        [down] = eventually(pending)
        assert down["labels"]["job"] == "klantreis-ingest" and down["state"] == "pending"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        codes = {service.name: service.stop() for service in reversed(services)}
    assert all(codes.values()), {s.name: s.output()[-2000:] for s in services}
