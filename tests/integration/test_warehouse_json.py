"""The metrics worker inserts records as the JSON it consumed, parsed by ClickHouse; embedded
mode inserts rows built from the models. Both must store the same thing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from klantreis.events import (
    CampaignContext,
    DeadLetter,
    DeadLetterReason,
    EventContext,
    PageContext,
)
from klantreis.phases import load_phase_model
from klantreis.simulator import collected_events
from services.metrics.rows import MAPPINGS, Record, TableMapping, mapping_for
from services.metrics.warehouse import Warehouse
from services.sessionizer.core import JourneyEngine, JourneyRules
from tests.unit.factories import make_event

NOW = datetime(2026, 6, 1, 12, 0, 0, 123_456, tzinfo=UTC)


def records() -> list[Record]:
    """Simulated traffic and what the sessionizer makes of it, and records with every optional
    field set or left out."""
    events = collected_events(seed=3, visitors=150, days=20, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    found: list[Record] = list(events)
    for event in events:
        found += engine.process(event)
    full = make_event("track", "Order Completed", user_id="c1", revenue=12.5, items=[1, "é"])
    found.append(
        full.model_copy(
            update={
                "traits": {"plan": "gold", "nested": {"a": [None, True]}},
                "is_bot": True,
                "original_timestamp": NOW,
                "sent_at": NOW,
                "context": EventContext(
                    page=PageContext(url="https://s.example/a?b=c", path="/a", title="\"A\" 'page'",
                                     referrer="https://google.com/", search="?b=c"),
                    campaign=CampaignContext(source="news", medium="email", name="spring",
                                             term="shoes", content="hero"),
                    user_agent="Mozilla/5.0", locale="nl-NL", library="klantreis.js",
                ),
            }
        )
    )  # fmt: skip
    found.append(make_event("page", visitor=None, user_id="c2"))
    found += [
        DeadLetter(
            site_id=site, reason=DeadLetterReason.LATE_EVENT, message="late\nline",
            payload='{"x": "\\u0000"}', stage="sessionizer", received_at=NOW,
        )
        for site in (None, "shop")
    ]  # fmt: skip
    return found


def stored(warehouse: Warehouse, table: str, columns: tuple[str, ...]) -> list[tuple[object, ...]]:
    listed = ", ".join(columns)
    return warehouse.query(f"SELECT {listed} FROM {{database}}.{table} ORDER BY {listed}")


@pytest.mark.parametrize("mapping", list(MAPPINGS.values()), ids=lambda m: m.table)
def test_a_records_json_is_stored_as_the_row_built_from_it(
    warehouse: Warehouse, mapping: TableMapping
) -> None:
    table_records = [r for r in records() if mapping_for(r) is mapping]
    assert len(table_records) >= 2
    table, columns = mapping.table, mapping.columns
    warehouse.insert(table, columns, [mapping.to_row(r) for r in table_records])
    as_rows = stored(warehouse, table, columns)
    warehouse.query(f"TRUNCATE TABLE {{database}}.{table}")
    warehouse.insert_json(table, mapping.json_fields, [r.to_bytes() for r in table_records])
    assert stored(warehouse, table, columns) == as_rows


def test_every_json_field_read_is_a_column_of_the_table(warehouse: Warehouse) -> None:
    for mapping in MAPPINGS.values():
        columns = warehouse.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            {"db": warehouse.database, "t": mapping.table},
        )
        assert set(mapping.json_fields) <= {name for (name,) in columns}, mapping.table
        assert len(mapping.json_fields) >= len(mapping.columns) // 2, mapping.table
