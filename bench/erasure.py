"""How long erasing one customer takes in the warehouse, against the exact phase funnel over the
same data, measured in the same run.

    .venv/bin/python bench/erasure.py [--visitors 20000] [--customers 5]

Simulates a shop's traffic over 30 days through the sessionizer's core into a fresh chDB
database (as `bench/queries.py` does, without its copies), then erases `--customers` customers
who logged in, one after another, each as `DELETE /api/v1/customers/{id}` does after the
sessionizer's part: find the linked ids, delete their rows from every raw table (mutations,
waited for), recompute the aggregates of their days. The baseline is the exact phase funnel
over all time (`/api/v1/funnel`), a query that reads every journey: an erasure costs a few of
those. The embedded target is a minute, with Kafka an hour.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime

from contracts.phases import load_phase_model
from klantreis.simulator import collected_events, store_simulated
from services.metrics import queries
from services.metrics.erasure import erase_from_warehouse, linked_ids
from services.metrics.warehouse import Warehouse

SITE = "shop"
MODEL = load_phase_model("default")


def main(visitors: int, customers: int) -> None:
    now = datetime.now(UTC)
    events = collected_events(seed=8, visitors=visitors, days=30, now=now, site_id=SITE)
    buyers = sorted({e.user_id for e in events if e.user_id})[:customers]
    with tempfile.TemporaryDirectory() as data:
        warehouse = Warehouse(f"chdb://{data}/chdb", "bench")
        warehouse.migrate()
        store_simulated(warehouse, events, MODEL)
        print(f"events: {len(events):,}; customers erased: {len(buyers)}")

        funnel = []
        for _ in range(3):
            started = time.perf_counter()
            queries.phase_funnel(warehouse, SITE, MODEL, None)
            funnel.append(time.perf_counter() - started)
        erasures, deleted = [], 0
        for customer in buyers:
            started = time.perf_counter()
            ids = linked_ids(warehouse, SITE, customer)
            deleted += erase_from_warehouse(warehouse, SITE, ids, datetime.now(UTC))
            erasures.append(time.perf_counter() - started)
        baseline, erasure = statistics.median(funnel), statistics.median(erasures)
        print(f"exact phase funnel (baseline): {baseline:.3f} s")
        print(f"one erasure: {erasure:.3f} s median ({min(erasures):.3f}-{max(erasures):.3f}), "
              f"{deleted / len(buyers):.0f} rows each")  # fmt: skip
        print(f"ratio erasure / funnel: {erasure / baseline:.1f}")
        print(f"share of the embedded target (60 s): {erasure / 60:.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.visitors, arguments.customers)
