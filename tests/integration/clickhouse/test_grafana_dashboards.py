"""The Grafana dashboards in deploy/grafana/ answer what their panels show: every ClickHouse
panel's SQL, with Grafana's macros and the dashboard's variables put in as the ClickHouse data
source puts them in, runs on chDB over simulated traffic, answers the columns the panel names,
and gives the read API's figures for the same days. Every Prometheus panel's query parses and
reads only series the services export or the recording rules make."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.phases import load_phase_model
from contracts.settings import load_settings
from klantreis.simulator import collected_events, store_simulated
from services.metrics import queries
from services.metrics.app import open_warehouse
from services.metrics.queries import DateRange
from services.metrics.warehouse import Warehouse
from tests.integration.kafka.test_prometheus import promtool

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
SITE = "shop"
MODEL = load_phase_model("default")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
FROM, TO = datetime(2026, 11, 10, tzinfo=UTC), NOW  # the time picker's range
DAYS = DateRange(FROM.date(), TO.date())
INTERVAL_SECONDS = 3600


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text())
    return loaded


def panels(board: dict[str, Any], datasource: str) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["datasource"]["type"] == datasource]


def expand(sql: str, variables: dict[str, str]) -> str:
    """The SQL as the ClickHouse data source sends it (its pkg/macros), after Grafana has put
    in the dashboard's variables."""

    def seconds(at: datetime) -> str:
        return f"toDateTime({int(at.timestamp())})"

    def day(at: datetime) -> str:
        return f"toDate('{at:%Y-%m-%d}')"

    macros: dict[str, Callable[[re.Match[str]], str]] = {
        r"\$__timeFilter\(([^)]+)\)": lambda m: (
            f"{m[1]} >= {seconds(FROM)} AND {m[1]} <= {seconds(TO)}"
        ),
        r"\$__dateFilter\(([^)]+)\)": lambda m: f"{m[1]} >= {day(FROM)} AND {m[1]} <= {day(TO)}",
        r"\$__timeInterval\(([^)]+)\)": lambda m: (
            f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {INTERVAL_SECONDS} second)"
        ),
        r"\$__fromTime\b": lambda m: seconds(FROM),
        r"\$__toTime\b": lambda m: seconds(TO),
        r"\$__interval_s\b": lambda m: str(INTERVAL_SECONDS),
    }
    for variable, value in variables.items():
        sql = sql.replace(f"${{{variable}}}", value)
    for pattern, replacement in macros.items():
        sql = re.sub(pattern, replacement, sql)
    assert "$" not in sql, f"a macro or variable was left in: {sql}"
    return sql


def variables(board: dict[str, Any], database: str) -> dict[str, str]:
    """The variables' default values (the constant `database` as this test's database), and
    `site` as the one simulated shop, which the site variable's own query must list."""
    values = {v["name"]: str(v.get("query", "")) for v in board["templating"]["list"]}
    values["database"] = database
    values["site"] = SITE
    return values


def expected_columns(panel: dict[str, Any]) -> list[str]:
    return [o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str) -> Iterator[Warehouse]:
    settings = load_settings(
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"grafana_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("grafana"),
    )
    warehouse = open_warehouse(settings)
    try:
        store_simulated(
            warehouse, collected_events(seed=23, visitors=1500, days=30, now=NOW), MODEL
        )
        yield warehouse
    finally:
        warehouse.close()


def answer(warehouse: Warehouse, panel: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The panel's columns (name and type) and rows."""
    board = dashboard("journey")
    (target,) = panel["targets"]
    sql = expand(target["rawSql"], variables(board, warehouse.database))
    described = warehouse.query(f"DESCRIBE TABLE ({sql})")
    types = {name: kind for name, kind, *_ in described}
    names = list(types)
    rows = warehouse.query(sql)
    if target["format"] == 0:  # a time series: Grafana takes the first column as its time
        assert names[0] == "time" and re.match(r"(Date|DateTime)", types["time"]), types
    return names, rows


def by_title(warehouse: Warehouse, title: str) -> list[dict[str, Any]]:
    (panel,) = [p for p in dashboard("journey")["panels"] if p["title"].startswith(title)]
    names, rows = answer(warehouse, panel)
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_every_clickhouse_panel_runs_and_answers_its_columns(warehouse: Warehouse) -> None:
    board = dashboard("journey")
    shown = panels(board, "grafana-clickhouse-datasource")
    assert len(shown) >= 5
    for panel in shown:
        names, rows = answer(warehouse, panel)
        assert set(expected_columns(panel)) <= set(names), (panel["title"], names)
        assert rows, f"{panel['title']} answered no rows on a month of traffic"


def test_the_site_variable_lists_the_shop(warehouse: Warehouse) -> None:
    board = dashboard("journey")
    (site,) = [v for v in board["templating"]["list"] if v["name"] == "site"]
    sql = expand(site["query"], {"database": warehouse.database})
    assert [row[0] for row in warehouse.query(sql)] == [SITE]


def test_the_phases_variable_defaults_to_the_default_phase_model() -> None:
    (phases,) = [v for v in dashboard("journey")["templating"]["list"] if v["name"] == "phases"]
    assert phases["query"].split(",") == list(MODEL.phases)


def test_the_funnel_and_drop_off_panels_give_the_read_apis_figures(warehouse: Warehouse) -> None:
    funnel = {r["phase"]: r["journeys"] for r in by_title(warehouse, "Phase funnel")}
    api = queries.recorded_phase_funnel(warehouse, SITE, MODEL, DAYS)
    assert list(funnel) == list(MODEL.phases)
    assert funnel == {r.phase: r.journeys for r in api}
    assert funnel["awareness"] > funnel["purchase"] > 0

    dropoff = {
        r["phase"]: (r["reached"], r["dropped"], r["rate"]) for r in by_title(warehouse, "Drop-off")
    }
    api_dropoff = queries.recorded_dropoff(warehouse, SITE, MODEL, DAYS)
    assert dropoff == {r.phase: (r.reached, r.dropped, r.rate) for r in api_dropoff}
    assert sum(dropped for _, dropped, _ in dropoff.values()) > 0


def test_the_per_day_panel_gives_the_trends_of_the_read_api(warehouse: Warehouse) -> None:
    per_day: dict[tuple[date, str], int] = {
        (r["time"], r["phase"]): r["journeys"] for r in by_title(warehouse, "Journeys per day")
    }
    trends = queries.trends(warehouse, SITE, MODEL, DAYS)
    expected = {
        (day.day, phase): journeys
        for day in trends
        for phase, journeys in day.journeys_by_phase.items()
        if any(day.journeys_by_phase.values())
    }
    assert per_day == expected and len({day for day, _ in per_day}) >= 15


def test_the_channels_panel_gives_the_read_apis_sessions_per_channel(warehouse: Warehouse) -> None:
    channels = {
        r["channel"]: (r["sessions"], r["converting_sessions"])
        for r in by_title(warehouse, "Channels")
    }
    api = queries.breakdown(warehouse, SITE, MODEL, "channel", DAYS)
    assert channels == {r.value: (r.sessions, r.converting_sessions) for r in api}
    assert len(channels) >= 3


def test_the_step_panel_narrows_from_viewed_to_ordered(warehouse: Warehouse) -> None:
    days = by_title(warehouse, "Step conversion")
    assert len(days) >= 15
    for day in days:
        assert day["viewed"] >= day["added"] >= day["ordered"]
    assert sum(day["ordered"] for day in days) > 0
    assert all(FROM.date() <= day["time"] <= TO.date() for day in days)


def test_every_prometheus_panel_parses_and_reads_series_that_exist(tmp_path: Path) -> None:
    board = dashboard("services")
    exprs = [t["expr"] for p in panels(board, "prometheus") for t in p["targets"]]
    assert len(exprs) >= 8
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "panels",
                        "rules": [
                            {"record": f"panel:query_{n}:check", "expr": expr}
                            for n, expr in enumerate(exprs)
                        ],
                    }
                ]
            }
        )
    )
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    recorded = set(
        re.findall(r"record: (\S+)", (ROOT / "deploy/prometheus/rules/klantreis.yml").read_text())
    )
    exported = "".join(p.read_text() for p in ROOT.glob("services/*/telemetry.py"))
    for expr in exprs:
        outside_labels = re.sub(r"\{[^}]*\}", "", expr)
        for name in re.findall(r"\bklantreis[a-z0-9_:]*", outside_labels):
            if ":" in name:
                assert name in recorded, f"{name} is no recording rule"
            else:
                spelled = (f'"{name}"', f'"{name.removesuffix("_total")}"')
                assert any(s in exported for s in spelled), f"{name} is exported by no service"
