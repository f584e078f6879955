"""Simulated traffic written straight into a warehouse, as the pipeline would have written it:
the input of the warehouse benchmarks (`queries.py`, `erasure.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.events import Event
from contracts.phases import PhaseModel
from services.metrics.rows import Row, mapping_for
from services.metrics.warehouse import Warehouse
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules


def store_simulated(warehouse: Warehouse, events: Sequence[Event], model: PhaseModel) -> None:
    """The events and what the sessionizer's core makes of them, inserted table by table."""
    engine = JourneyEngine(JourneyRules(model))
    rows: dict[str, tuple[tuple[str, ...], list[Row]]] = {}
    for event in events:
        for record in (event, *engine.process(event)):
            mapping = mapping_for(record)
            rows.setdefault(mapping.table, (mapping.columns, []))[1].append(mapping.to_row(record))
    for table, (columns, table_rows) in rows.items():
        for start in range(0, len(table_rows), 100_000):
            warehouse.insert(table, columns, table_rows[start : start + 100_000])
