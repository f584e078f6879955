"""The daily aggregates the dashboard reads count exactly: 50,000 simulated journeys through the
sessionizer's core into chDB, and every figure from the aggregates equals a direct
`count(DISTINCT …)` over the raw rows they come from, to the unit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from contracts.journeys import PhaseTransition, TransitionKind, legacy_number
from contracts.phases import load_phase_model
from contracts.settings import load_settings
from klantreis.embedded import STATE_FILE
from klantreis.simulator import collected_events, store_simulated
from services.metrics import queries
from services.metrics.app import open_warehouse
from services.metrics.queries import DateRange
from services.metrics.rows import mapping_for
from services.metrics.warehouse import Warehouse
from tests.integration.clickhouse.test_read_api_funnels import load, page
from tests.support.embedded import embedded

SITE = "shop"
MODEL = load_phase_model("default")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
DAYS = DateRange(date(2026, 10, 30), date(2026, 11, 30))
IN_RANGE = "site_id = 'shop' AND toDate({column}) BETWEEN '2026-10-30' AND '2026-11-30'"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str) -> Iterator[Warehouse]:
    settings = load_settings(
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"test_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("exact"),
    )
    warehouse = open_warehouse(settings)
    try:
        events = collected_events(seed=17, visitors=51_000, days=30, now=NOW)
        store_simulated(warehouse, events, MODEL)
        yield warehouse
    finally:
        warehouse.close()


def direct(warehouse: Warehouse, sql: str) -> dict[Any, int]:
    return {
        tuple(row[:-1]) if len(row) > 2 else row[0]: int(row[-1]) for row in warehouse.query(sql)
    }


def reach_sql(by: str = "") -> str:
    """Per phase (and `by`): journeys whose furthest phase in the range is it or a later one."""
    columns = f"{by}, " if by else ""
    phases = list(MODEL.phases)
    return (
        f"SELECT {columns}phase, count(DISTINCT journey_id) FROM {{database}}.phase_transitions "
        f"ARRAY JOIN arraySlice({phases!r}, 1, indexOf({phases!r}, furthest_phase)) "
        f"AS phase WHERE kind != 'dropped_off' AND {IN_RANGE.format(column='at')} "
        f"GROUP BY {columns}phase"
    )


def test_fifty_thousand_journeys_count_exactly_in_the_phase_funnel_and_drop_off(
    warehouse: Warehouse,
) -> None:
    ((journeys,),) = warehouse.query(
        "SELECT count(DISTINCT journey_id) FROM {database}.phase_transitions"
    )
    assert journeys >= 50_000
    funnel = {
        r.phase: r.journeys for r in queries.recorded_phase_funnel(warehouse, SITE, MODEL, DAYS)
    }
    assert funnel == direct(warehouse, reach_sql())
    assert funnel[MODEL.phases[0]] >= 50_000
    dropped = direct(
        warehouse,
        "SELECT to_phase, count(DISTINCT journey_id) FROM {database}.phase_transitions "
        f"WHERE kind = 'dropped_off' AND {IN_RANGE.format(column='at')} GROUP BY to_phase",
    )
    dropoff = queries.recorded_dropoff(warehouse, SITE, MODEL, DAYS)
    assert {d.phase: d.dropped for d in dropoff if d.dropped} == dropped


def test_every_day_and_every_breakdown_counts_exactly(warehouse: Warehouse) -> None:
    days = queries.trends(warehouse, SITE, MODEL, DAYS)
    sessions = direct(
        warehouse,
        "SELECT toDate(started_at), count(DISTINCT session_id) FROM {database}.sessions "
        f"WHERE {IN_RANGE.format(column='started_at')} GROUP BY 1",
    )
    assert {d.day: d.sessions for d in days if d.sessions} == sessions
    converting = direct(
        warehouse,
        "SELECT toDate(started_at), count(DISTINCT session_id) FROM {database}.sessions "
        f"WHERE conversions > 0 AND {IN_RANGE.format(column='started_at')} GROUP BY 1",
    )
    assert {d.day: d.converting_sessions for d in days if d.converting_sessions} == converting
    # per day, how far journeys got and the conversion between phases: where an incident shows
    reached = direct(warehouse, reach_sql("toDate(at)"))
    for figures in days:
        counts = [reached.get((figures.day, phase), 0) for phase in MODEL.phases]
        assert list(figures.journeys_by_phase.values()) == counts, figures.day
        shares = [None] + [n / before if before else None for before, n in pairwise(counts)]
        assert list(figures.from_previous_phase.values()) == shares, figures.day

    for by in ("channel", "device", "segment"):
        rows = queries.breakdown(warehouse, SITE, MODEL, by, DAYS)
        found = {
            (row.value, phase): n for row in rows for phase, n in row.journeys_by_phase.items() if n
        }
        expected = {
            (value or "unknown", phase): n
            for (value, phase), n in direct(warehouse, reach_sql(by)).items()
        }
        assert found == expected, by
        # conversion between phases, per value: of those that reached the phase before
        for row in rows:
            for previous, phase in zip(MODEL.phases, MODEL.phases[1:], strict=False):
                before = expected.get((row.value, previous), 0)
                share = expected.get((row.value, phase), 0) / before if before else None
                assert row.from_previous_phase[phase] == share, (by, row.value, phase)

    credit = queries.recorded_touchpoints(warehouse, SITE, MODEL, DAYS)
    last_touch = direct(
        warehouse,
        "SELECT to_phase, touchpoint, channel, count(DISTINCT journey_id) "
        "FROM {database}.phase_transitions WHERE kind IN ('entered', 'advanced') "
        f"AND to_phase = furthest_phase AND {IN_RANGE.format(column='at')} GROUP BY 1, 2, 3",
    )
    assert {(c.phase, c.touchpoint, c.channel): c.last_touch for c in credit} == {
        (phase, touchpoint or "unknown", channel or "unknown"): n
        for (phase, touchpoint, channel), n in last_touch.items()
    }


def test_a_journey_under_way_before_numbering_counts_once_across_the_upgrade(
    warehouse: Warehouse,
) -> None:
    """Its rows of before have number 0; those after carry the number the sessionizer gives a
    journey restored without one (`legacy_number`)."""
    day = DateRange(date(2026, 12, 5), date(2026, 12, 5))
    at = datetime(2026, 12, 5, 9, tzinfo=UTC)

    def moved(to_phase: str, number: int | None, minutes: int) -> PhaseTransition:
        return PhaseTransition(
            transition_id=f"legacy-{to_phase}", site_id=SITE, journey_id="legacy-journey",
            session_id="legacy-session", kind=TransitionKind.ADVANCED, from_phase=None,
            to_phase=to_phase, furthest_phase=to_phase, at=at + timedelta(minutes=minutes),
            seconds_in_previous_phase=None, event_id=None, event_name=None, channel="direct",
            touchpoint=None, journey_number=number,
        )  # fmt: skip

    before, after = (
        moved("awareness", None, 0),
        moved("consideration", legacy_number("legacy-journey"), 5),
    )
    mapping = mapping_for(before)
    warehouse.insert(
        mapping.table, mapping.columns, [mapping.to_row(before), mapping.to_row(after)]
    )
    funnel = queries.recorded_phase_funnel(warehouse, SITE, MODEL, day)
    assert [(r.phase, r.journeys) for r in funnel][:3] == [
        ("awareness", 1),
        ("consideration", 1),
        ("purchase", 0),
    ]


async def test_after_an_embedded_crash_no_journey_number_is_given_twice(
    chdb_dsn: str, tmp_path: Path
) -> None:
    """A crash loses the sessionizer state since the last clean stop, not the rows written since:
    the journeys begun then keep their numbers, and the next ones must not take them."""
    database = f"crash_{uuid.uuid4().hex[:10]}"
    today = datetime.now(UTC).replace(microsecond=0)
    async with embedded(chdb_dsn, tmp_path, clickhouse_database=database) as client:
        await load(client, [page("before-crash", today - timedelta(minutes=5))])
    (tmp_path / STATE_FILE).unlink()  # as if the process had died before saving it
    async with embedded(chdb_dsn, tmp_path, clickhouse_database=database) as client:
        await load(client, [page("after-crash", today)])
        response = await client.get("/api/v1/funnel", params={"site": "demo", "exact": "false"})
    assert response.status_code == 200, response.text
    assert response.json()["phases"][0] == {
        "phase": "awareness",
        "journeys": 2,
        "from_previous": None,
    }
