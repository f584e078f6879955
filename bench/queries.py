"""Dashboard query speed on chDB with millions of simulated events, against a plain scan of the
same range measured in the same run.

    .venv/bin/python bench/queries.py [--events 10000000] [--base-visitors 40000]

Simulates a shop's traffic over 30 days (visitors, sessions, journeys through the sessionizer's
core, identity links), writes it to a fresh chDB database, and copies it under new visitor,
session and journey ids until the events table holds `--events` rows (the materialized views
fill the daily aggregates as the copies go in). Then times, over the last 30 days, each query the
dashboards ask (median of 5 after a warm-up) next to `SELECT count()` of the same days' events:

- from the daily aggregates (what dashboards ask: `exact=false`, `/breakdown`, `/trends`): the
  phase funnel, drop-off per phase, channel and device breakdowns, trends, last-touch credit,
  all exact counts (bitmaps of journey and session numbers, migration 0015);
- from raw rows, a customer's devices folded into one journey (`exact=true`): the phase funnel
  and drop-off, and a three-step ordered funnel (`/api/v1/funnels/steps`), for reference;
- what the dashboard at `/` adds: the shop metrics, the journey map, the newest signals, and its
  figures filtered by a device (raw rows: services/metrics/filters.py), among them the step
  funnel per day.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.phases import load_phase_model
from klantreis.simulator import collected_events, store_simulated
from services.metrics import queries
from services.metrics.filters import Filters
from services.metrics.funnel import FunnelOrder, FunnelStep
from services.metrics.queries import DateRange, given_serials
from services.metrics.warehouse import Warehouse

SITE = "shop"
MODEL = load_phase_model("default")
MOBILE = Filters(device="mobile")
# Columns holding ids that must differ per copy, by table; a copy appends `~<n>` to each.
ID_COLUMNS = {
    "events": ("event_id", "anonymous_id", "user_id"),
    "sessions": ("session_id", "journey_id", "anonymous_id", "user_id"),
    "phase_transitions": ("transition_id", "journey_id", "session_id", "event_id"),
    "signals": ("signal_id", "journey_id", "event_id"),
    "identities": ("link_id", "previous_id", "customer_id", "event_id"),
}


def load_base(warehouse: Warehouse, visitors: int, now: datetime) -> int:
    events = collected_events(seed=8, visitors=visitors, days=30, now=now, site_id=SITE)
    store_simulated(warehouse, events, MODEL)
    return len(events)


# Journey and session numbers (migration 0015): a copy shifts them past every number before it,
# so they stay unique and as dense as the sessionizer keeps them.
NUMBER_COLUMNS = ("journey_number", "session_number")


def numbers_stride(warehouse: Warehouse) -> int:
    """Past every journey and session number of the base data (one journeys partition)."""
    return max(given_serials(warehouse)) + 1


def copy_once(warehouse: Warehouse, copy: int, stride: int) -> None:
    for table, ids in ID_COLUMNS.items():
        columns = [
            name
            for (name,) in warehouse.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = "
                "{t:String} AND default_kind NOT IN ('EPHEMERAL', 'ALIAS') ORDER BY position",
                {"db": warehouse.database, "t": table},
            )
        ]
        select = ", ".join(
            f"if({c} = '', '', concat({c}, '~{copy}'))"
            if c in ids
            else f"if({c} = 0, 0, {c} + {copy * stride})"
            if c in NUMBER_COLUMNS
            else c
            for c in columns
        )
        warehouse.query(
            f"INSERT INTO {{database}}.{table} ({', '.join(columns)}) "
            f"SELECT {select} FROM {{database}}.{table} WHERE NOT position({ids[0]}, '~') > 0"
        )


def timed(run: Callable[[], Any], repeats: int = 5) -> float:
    """The median of `repeats` runs after a warm-up; of two when the warm-up took over 2 s (a
    figure that slow is far from any budget, and five runs would make the bench long)."""
    started = time.perf_counter()
    run()
    if time.perf_counter() - started > 2:
        repeats = 2
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(target_events: int, base_visitors: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as data:
        warehouse = Warehouse(f"chdb://{data}/chdb", "bench")
        warehouse.migrate()
        started = time.perf_counter()
        base = load_base(warehouse, base_visitors, now)
        copies = max(0, -(-target_events // base) - 1)
        stride = numbers_stride(warehouse)
        for copy in range(1, copies + 1):
            copy_once(warehouse, copy, stride)
        # The steady state: background merges have combined the copies' parts (and each
        # aggregate key's states) by the time a shop looks at a month.
        for (table,) in warehouse.query(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            "AND engine LIKE '%MergeTree'",
            {"db": warehouse.database},
        ):
            warehouse.query(f"OPTIMIZE TABLE {{database}}.{table} FINAL")
        loaded = time.perf_counter() - started
        (events,) = warehouse.query("SELECT count() FROM {database}.events")[0]
        (transitions,) = warehouse.query("SELECT count() FROM {database}.phase_transitions")[0]
        print(f"events: {events:,} ({base:,} simulated x {copies + 1}); transitions: "
              f"{transitions:,}; loaded in {loaded:.0f} s")  # fmt: skip

        days = DateRange.last_days(30, now.date())
        in_range = {"site": SITE, "since_ms": int(days.since.timestamp() * 1000),
                    "until_ms": int(days.until.timestamp() * 1000)}  # fmt: skip
        baseline = timed(
            lambda: warehouse.query(
                "SELECT count() FROM {database}.events WHERE site_id = {site:String} "
                "AND timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}) "
                "AND timestamp < fromUnixTimestamp64Milli({until_ms:Int64})",
                in_range,
            )
        )
        steps = [
            FunnelStep.parse(s) for s in ("Product Viewed", "Product Added", "Order Completed")
        ]
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("phase funnel, 30 days (aggregates)",
             lambda: queries.recorded_phase_funnel(warehouse, SITE, MODEL, days)),
            ("drop-off, 30 days (aggregates)",
             lambda: queries.recorded_dropoff(warehouse, SITE, MODEL, days)),
            ("channel breakdown, 30 days",
             lambda: queries.breakdown(warehouse, SITE, MODEL, "channel", days)),
            ("device breakdown, 30 days",
             lambda: queries.breakdown(warehouse, SITE, MODEL, "device", days)),
            ("trends, 30 days", lambda: queries.trends(warehouse, SITE, MODEL, days)),
            ("touchpoints, 30 days (aggregates)",
             lambda: queries.recorded_touchpoints(warehouse, SITE, MODEL, days)),
            ("phase funnel, 30 days (exact)",
             lambda: queries.phase_funnel(warehouse, SITE, MODEL, days)),
            ("drop-off, 30 days (exact)", lambda: queries.dropoff(warehouse, SITE, MODEL, days)),
            ("step funnel (ordered, 7d), 30 days",
             lambda: queries.step_funnel(warehouse, SITE, steps, FunnelOrder.ORDERED,
                                         timedelta(days=7), days)),
            # What the dashboard adds, and its figures under a filter (raw rows, exact).
            ("shop metrics, 30 days",
             lambda: queries.shop_metrics(warehouse, SITE, MODEL, days)),
            ("journey map, 30 days", lambda: queries.journey_map(warehouse, SITE, MODEL, days)),
            ("signals, newest 50 of the last day",
             lambda: queries.recent_signals(warehouse, SITE, now - timedelta(days=1))),
            ("phase funnel, device=mobile",
             lambda: queries.phase_funnel(warehouse, SITE, MODEL, days, MOBILE)),
            ("shop metrics, device=mobile",
             lambda: queries.shop_metrics(warehouse, SITE, MODEL, days, filters=MOBILE)),
            ("trends, device=mobile",
             lambda: queries.trends(warehouse, SITE, MODEL, days, MOBILE)),
            ("channel breakdown, device=mobile",
             lambda: queries.breakdown(warehouse, SITE, MODEL, "channel", days, MOBILE)),
            ("journey map, device=mobile",
             lambda: queries.journey_map(warehouse, SITE, MODEL, days, MOBILE)),
            ("step funnel per day, device=mobile",
             lambda: queries.step_trends(warehouse, SITE, steps, FunnelOrder.ORDERED,
                                         timedelta(days=1), days, "day", MOBILE)),
        ]  # fmt: skip
        print(f"{'query':40} {'median ms':>10} {'x count()':>10}")
        print(f"{'count() of the events (baseline)':40} {1000 * baseline:>10.1f} {1:>10.1f}")
        for name, run in cases:
            seconds = timed(run)
            print(f"{name:40} {1000 * seconds:>10.1f} {seconds / baseline:>10.1f}")
        warehouse.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--base-visitors", type=int, default=40_000)
    args = parser.parse_args()
    main(args.events, args.base_visitors)
