"""docker-compose.yml cannot run here, so it is kept true by reading it: every variable it sets
is one the settings read, every port it publishes or scrapes is the one the service listens on."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.settings import ENV_PREFIX, Settings, load_settings
from klantreis.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
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


def listening_port(name: str, settings: Settings) -> int:
    return {"ingest": settings.port, "sessionizer": settings.sessionizer_port}.get(
        name, settings.api_port
    )


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


@pytest.mark.parametrize("name", ["ingest", "metrics"])
def test_published_ports_are_the_ports_the_services_listen_on(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = listening_port(name, service_settings(name, monkeypatch))
    assert f"{port}:{port}" in COMPOSE["services"][name]["ports"]


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
        f"{name}:{listening_port(name, service_settings(name, monkeypatch))}"
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
