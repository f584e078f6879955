"""docker-compose.yml cannot run here, so it is kept true by reading it: every variable it sets
is one the settings read, every port it publishes or scrapes is the one the service listens on."""

from __future__ import annotations

import json
import re
import secrets
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.settings import ENV_PREFIX, Settings, load_settings
from klantreis.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
KNOWN = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {"PORT"}


REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?(?P<message>.+)\}$")


def service_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The service's settings from its compose environment; a variable compose requires from
    the shell (`${NAME:?message}`) gets a random value, as a user following the message sets."""
    for variable in list(KNOWN):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in COMPOSE["services"][name]["environment"].items():
        required = REQUIRED.match(str(value))
        monkeypatch.setenv(variable, secrets.token_hex(32) if required else str(value))
    return load_settings()


def test_the_read_api_will_not_start_without_an_admin_token_from_the_shell() -> None:
    value = COMPOSE["services"]["metrics"]["environment"]["KLANTREIS_ADMIN_TOKEN"]
    required = REQUIRED.match(value)
    assert required and required["name"] == "KLANTREIS_ADMIN_TOKEN"
    assert "openssl rand" in required["message"]


def operators_port(name: str, settings: Settings) -> int:
    """Where a service serves /metrics and its probes."""
    return {
        "ingest": settings.ingest_ops_port,
        "sessionizer": settings.sessionizer_port,
        "metrics": settings.api_ops_port,
    }[name]


@pytest.mark.parametrize("name", ["ingest", "sessionizer", "metrics"])
def test_each_service_sets_only_variables_the_settings_read(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment: dict[str, Any] = COMPOSE["services"][name]["environment"]
    assert set(environment) <= KNOWN, set(environment) - KNOWN
    settings = service_settings(name, monkeypatch)  # values must also validate
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.host == "0.0.0.0"
    assert settings.write_keys == {"demo": "demo"}


@pytest.mark.parametrize("name", ["ingest", "sessionizer", "metrics"])
def test_each_service_runs_a_real_subcommand(name: str) -> None:
    command = COMPOSE["services"][name]["command"]
    assert build_parser().parse_args(command).command == name


def test_the_public_reaches_the_collector_only_through_the_edge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings("ingest", monkeypatch)
    assert "ports" not in COMPOSE["services"]["ingest"]
    edge = COMPOSE["services"]["edge"]
    assert f"{settings.port}:8080" in edge["ports"]
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert f"server ingest:{settings.port};" in nginx
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in edge["volumes"]
    # nginx replaces X-Forwarded-For with the address it saw: exactly one hop to trust.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in nginx
    assert settings.proxy_hops == 1


def test_the_read_api_is_published_on_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = service_settings("metrics", monkeypatch).api_port
    assert f"{port}:{port}" in COMPOSE["services"]["metrics"]["ports"]


@pytest.mark.parametrize("name", ["ingest", "sessionizer", "metrics"])
def test_each_service_restarts_and_is_probed_on_its_operators_port(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = COMPOSE["services"][name]
    assert service["restart"] == "unless-stopped"
    port = operators_port(name, service_settings(name, monkeypatch))
    probe = service["healthcheck"]["test"]
    assert probe[-1] in (
        f"http://127.0.0.1:{port}/readyz",
        f"http://127.0.0.1:{port}/healthz",
        f"http://127.0.0.1:{port}/metrics",
    )
    assert all(str(port) not in published for published in service.get("ports", []))


def test_every_other_service_restarts_too() -> None:
    assert {name for name, s in COMPOSE["services"].items() if s.get("restart")} == set(
        COMPOSE["services"]
    )


def test_prometheus_scrapes_every_service_where_it_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    targets = {
        target
        for job in PROMETHEUS["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    expected = {
        f"{name}:{operators_port(name, service_settings(name, monkeypatch))}"
        for name in ("ingest", "sessionizer", "metrics")
    }
    assert targets == expected


def test_the_metrics_worker_writes_to_the_clickhouse_server_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clickhouse = COMPOSE["services"]["clickhouse"]["environment"]
    dsn = service_settings("metrics", monkeypatch).resolved_clickhouse_dsn
    user, password = clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"]
    assert dsn == f"http://{user}:{password}@clickhouse:8123"


def test_the_compose_kafka_image_is_the_version_the_tests_run() -> None:
    from klantreis.local_kafka import kafka_version

    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_make_run_kafka_restarts_a_crashing_service_ever_more_slowly() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack", ROOT / "deploy" / "run_kafka_stack.py")
    assert spec is not None and spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    restarts = stack.Restarts()
    delays = [restarts.after_exit("sessionizer", float(t)) for t in (0, 5, 10, 20, 40, 60)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert restarts.after_exit("sessionizer", 500.0) == 0.0  # a minute up: a new start
    assert restarts.after_exit("ingest", 500.0) == 0.0


GRAFANA = ROOT / "deploy" / "grafana"


def test_grafana_reads_clickhouse_as_the_read_only_user_compose_creates() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/klantreis.yml").read_text())
    (clickhouse,) = [
        s for s in sources["datasources"] if s["type"].endswith("clickhouse-datasource")
    ]
    users = ElementTree.parse(ROOT / "deploy/clickhouse/users.d/grafana.xml").getroot()
    user = users.find(f"users/{clickhouse['jsonData']['username']}")
    assert user is not None, "the data source's user is not the one users.d defines"
    profile = users.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    password_variable = user.find("password").get("from_env")  # type: ignore[union-attr]
    assert clickhouse["secureJsonData"]["password"] == f"${password_variable}"
    for service in ("clickhouse", "grafana"):  # the server checks it, Grafana sends it
        assert password_variable in COMPOSE["services"][service]["environment"]
    server = COMPOSE["services"]["clickhouse"]
    assert any(
        v.endswith(":/etc/clickhouse-server/users.d/grafana.xml:ro") for v in server["volumes"]
    )
    assert (clickhouse["jsonData"]["host"], clickhouse["jsonData"]["port"]) == ("clickhouse", 8123)
    assert "8123:8123" in server["ports"]
    assert clickhouse["jsonData"]["defaultDatabase"] == load_settings().clickhouse_database


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/klantreis.yml").read_text())
    (provider,) = providers["providers"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in COMPOSE["services"]["grafana"]["volumes"]
    )
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/klantreis.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    prometheus = next(s for s in sources["datasources"] if s["type"] == "prometheus")
    assert (
        prometheus["url"] == "http://prometheus:9090"
        and "9090:9090" in COMPOSE["services"]["prometheus"]["ports"]
    )
    for board in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(board.read_text())
        used = {p["datasource"]["uid"] for p in dashboard["panels"]}
        used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
        assert used <= uids, (board.name, used - uids)
