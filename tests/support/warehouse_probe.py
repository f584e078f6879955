"""Reads and prepares a chDB warehouse from its own process (chDB opens one path per process, and
the test process may hold another): `python -m tests.support.warehouse_probe <dsn> <db>
hold-merges|fingerprint|event-ids`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.metrics.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]

# The tables the worker writes row for row; a duplicate shows in their count and checksum.
RAW_TABLES = ("events", "sessions", "phase_transitions", "signals", "identities", "dead_letters")
# Aggregates: how rows split into parts depends on insert batches, so compare what they answer.
# Journeys and sessions are bitmaps (migration 0015); activity is an estimate (0007).
B, E = "groupBitmapMerge", "uniqCombinedMerge(14)"
AGGREGATES = {
    "phase_reach_daily": ("site_id, day, phase", f"{B}(journeys)"),
    "phase_reach_channel_daily": ("site_id, day, phase, channel", f"{B}(journeys)"),
    "phase_reach_device_daily": ("site_id, day, phase, device", f"{B}(journeys)"),
    "phase_reach_segment_daily": ("site_id, day, phase, segment", f"{B}(journeys)"),
    "sessions_daily": (
        "site_id, day, channel",
        f"{B}(sessions), {B}(engaged_sessions), {B}(converting_sessions)",
    ),
    "dropoffs_daily": ("site_id, day, phase", f"{B}(journeys)"),
    "touchpoints_daily": ("site_id, day, phase, touchpoint, channel", f"{B}(journeys)"),
    "activity_daily": (
        "site_id, day, action, device",
        f"{E}(events), {E}(people)",
    ),
}


def hold_merges(warehouse: Warehouse) -> None:
    """Stop background merges on the raw tables, which would collapse duplicate rows and hide
    them from a count."""
    for table in RAW_TABLES:
        warehouse.query(
            f"ALTER TABLE {{database}}.{table} MODIFY SETTING "
            "max_bytes_to_merge_at_max_space_in_pool = 1, "
            "max_bytes_to_merge_at_min_space_in_pool = 1"
        )


def fingerprint(warehouse: Warehouse) -> dict[str, list[int]]:
    """Per table: rows and an order-independent checksum of every row (but `stored_at`, the
    server's clock when the row was written, which differs between any two runs)."""
    found = {}
    for table in RAW_TABLES:
        count, checksum = warehouse.query(
            f"SELECT count(), sum(cityHash64(* EXCEPT (stored_at))) FROM {{database}}.{table}"
        )[0]
        found[table] = [int(count), int(checksum)]
    for table, (keys, merged) in AGGREGATES.items():
        count, checksum = warehouse.query(
            f"SELECT count(), sum(cityHash64(*)) FROM "
            f"(SELECT {keys}, {merged} FROM {{database}}.{table} GROUP BY {keys})"
        )[0]
        found[table] = [int(count), int(checksum)]
    return found


def probe(dsn: str, database: str, action: str) -> str:
    """Run `action` on the warehouse from a process of its own; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.warehouse_probe", dsn, database, action],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def main(argv: list[str]) -> None:
    dsn, database, action = argv
    warehouse = Warehouse(dsn, database)
    try:
        if action == "hold-merges":
            warehouse.migrate()
            hold_merges(warehouse)
        elif action == "event-ids":  # how many rows of `events` each event id has
            rows = warehouse.query("SELECT event_id, count() FROM {database}.events GROUP BY 1")
            print(json.dumps({str(event_id): int(count) for event_id, count in rows}))
        else:
            print(json.dumps(fingerprint(warehouse)))
    finally:
        warehouse.close()


if __name__ == "__main__":
    main(sys.argv[1:])
