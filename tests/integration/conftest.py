"""One real Kafka broker per test session; each test gets its own topics, consumer groups and
ClickHouse database, so tests never see each other's records.

Set KLANTREIS_TEST_KAFKA_BOOTSTRAP_SERVERS to use a running broker instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.settings import Settings, load_settings
from klantreis.local_kafka import LocalKafka, kafka_version
from services.metrics.app import open_warehouse
from services.metrics.warehouse import Warehouse
from tests.support.pipeline import ADMIN_TOKEN, SITE, WRITE_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


_broker_used: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in the output which real broker the integration tests ran against."""
    for line in _broker_used:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KLANTREIS_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        _broker_used.append(f"kafka: integration tests used the broker at {external}")
        yield external
        return
    with LocalKafka() as broker:
        _broker_used.append(
            f"kafka: integration tests ran against Apache Kafka {kafka_version()} (KRaft), "
            f"started at {broker.bootstrap_servers} for this session"
        )
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """chDB opens one data path per process, so every in-process test shares this one."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def settings(kafka_bootstrap: str, chdb_dsn: str, tmp_path: Path) -> Settings:
    unique = uuid.uuid4().hex[:10]
    return load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"test-{unique}",
        topic_partitions=3,
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"test_{unique}",
        data_dir=tmp_path,
        sites={WRITE_KEY: SITE},
        admin_token=ADMIN_TOKEN,
        flush_interval_seconds=0.2,
        # Test events are dated in the past: a clock that followed the wall clock would fire
        # every timer at a moment that depends on the test's pace.
        idle_after_seconds=0,
    )


@pytest.fixture
def warehouse(settings: Settings) -> Iterator[Warehouse]:
    warehouse = open_warehouse(settings)
    try:
        yield warehouse
    finally:
        warehouse.close()
