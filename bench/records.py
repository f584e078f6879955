"""What the record types cost, without Kafka or HTTP: the collector's model path and the
sessionizer's logic, each beside a baseline measured in the same run.

    .venv/bin/python bench/records.py [--visitors 3000]

1. The collector's model path: simulated events as a tracker sends them, through `intake`
   (decode and validate the client's event, enrich it, build the record) and encoded as the
   Kafka record, in batches of 20 and one per call. Baseline: the same events parsed from JSON
   and written back (orjson), the least any JSON collector does.
2. The sessionizer's logic: both stages (identities by device, journeys by customer) over the
   same events in memory, with the hop's encoding and decoding and every output encoded.
   Baseline: decoding each event once.

Prints CPU microseconds per event (the median of five rounds) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from contracts.events import Event
from contracts.settings import load_settings
from klantreis.runtime import tune_garbage_collection
from klantreis.simulator import generate_journeys
from services.ingest.intake import intake
from services.sessionizer.config import journey_rules
from services.sessionizer.encoding import routed_from_record, routed_headers, routed_value
from services.sessionizer.stages import IdentityStage, JourneyStage, upstream_watermarks

NOW = datetime(2026, 6, 1, tzinfo=UTC)
Batches = Callable[[list[list[dict[str, Any]]]], None]
ROUNDS = 5


def cpu_micros_per_event(work: Callable[[], object], events: int) -> float:
    """The median over ROUNDS of the CPU time `work` takes, per event, in microseconds."""
    work()  # caches filled, memory grown: what a running service has
    samples = []
    for _ in range(ROUNDS):
        started = time.process_time()
        work()
        samples.append((time.process_time() - started) / events * 1e6)
    return statistics.median(samples)


def collector_path(batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        for event in intake(batch, "shop", NOW, 32 * 1024).events:
            event.to_bytes()


def json_round_trip(batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        for item in orjson.loads(orjson.dumps(batch)):
            orjson.dumps(item)


def sessionizer_logic(values: list[bytes]) -> None:
    """Both stages on one partition each, as `bench/sessionizer.py` runs them without Kafka."""
    rules = journey_rules(load_settings())
    identities, journeys = IdentityStage(rules, 0), JourneyStage(rules, upstream_partitions=1)
    hop: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    for value in values:
        event = Event.from_bytes(value)
        links, routed = identities.route(event)
        for link in links:
            link.to_bytes()
        for one in routed:
            hop.append((value if one.event is event else routed_value(one), routed_headers(one)))
    for _, marker in upstream_watermarks(0, identities.newest, [0]):
        hop.append((b"", routed_headers(marker)))
    identities.take_changes()
    for value, headers in hop:
        outputs, handoffs = journeys.process(routed_from_record(value, headers))
        for output in outputs:
            output.to_bytes()
        for handoff in handoffs:
            routed_value(handoff)
    journeys.take_changes()


def decode_each(values: list[bytes]) -> None:
    for value in values:
        Event.from_bytes(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=3000)
    args = parser.parse_args()
    tune_garbage_collection()

    sent = [
        {**event, "sent_at": NOW.isoformat()}
        for journey in generate_journeys(1, args.visitors, 30, now=NOW)
        for event in journey
    ]
    sent.sort(key=lambda event: str(event.get("timestamp")))
    count = len(sent)
    in_twenties = [sent[i : i + 20] for i in range(0, count, 20)]
    one_by_one = [[event] for event in sent]
    records = intake(sent, "shop", NOW, 32 * 1024).events
    values = [event.to_bytes() for event in sorted(records, key=lambda e: e.timestamp)]
    print(f"{count} events from {args.visitors} visitors; CPU microseconds per event, "
          f"median of {ROUNDS} rounds")  # fmt: skip

    rows: list[tuple[str, Batches, list[list[dict[str, Any]]], str, Batches]] = [
        ("collector model path, batches of 20", collector_path, in_twenties,
         "JSON parse and write (orjson)", json_round_trip),
        ("collector model path, one event per call", collector_path, one_by_one,
         "JSON parse and write (orjson)", json_round_trip),
    ]  # fmt: skip
    for name, work, batches, baseline_name, baseline in rows:
        measured = cpu_micros_per_event(partial(work, batches), count)
        base = cpu_micros_per_event(partial(baseline, batches), count)
        print(f"{name}: {measured:.1f} us; {baseline_name}: {base:.1f} us; "
              f"ratio {measured / base:.1f}")  # fmt: skip
    logic = cpu_micros_per_event(lambda: sessionizer_logic(values), len(values))
    decode = cpu_micros_per_event(lambda: decode_each(values), len(values))
    print(f"sessionizer logic, both stages in memory: {logic:.1f} us "
          f"({1e6 / logic:,.0f} events per CPU-second); decoding each event once: "
          f"{decode:.1f} us; ratio {logic / decode:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
