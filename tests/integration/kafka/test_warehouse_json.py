"""The metrics worker inserts records as the JSON it consumed, parsed by ClickHouse; embedded
mode inserts rows built from the models. Both must store the same thing."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from contracts.events import (
    CampaignContext,
    DeadLetter,
    DeadLetterReason,
    EventContext,
    PageContext,
)
from contracts.journeys import IdentityLink
from contracts.phases import load_phase_model
from contracts.records import StoredRecord
from contracts.settings import Settings
from klantreis.simulator import collected_events
from services.metrics.rows import MAPPINGS, TableMapping, mapping_for
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.writer import WarehouseWriter
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from tests.support.factories import make_event

# Recent: dead letters and signals have a TTL, and a background merge may drop expired rows
# between an insert and the read that checks it.
NOW = datetime.now(UTC).replace(microsecond=123_456)


def records() -> list[StoredRecord]:
    """Simulated traffic and what the sessionizer makes of it, and records with every optional
    field set or left out."""
    events = collected_events(seed=3, visitors=150, days=20, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    found: list[StoredRecord] = list(events)
    for event in events:
        found += engine.process(event)
    full = make_event("track", "Order Completed", user_id="c1", revenue=12.5, items=[1, "é"])
    found.append(
        msgspec.structs.replace(
            full,
            **{
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
            },
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


class _RefusesJson(Warehouse):
    """The real engine, except that every JSON insert fails, as on a server that does not
    answer or a document it cannot read."""

    def insert_json(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("no answer")


async def test_documents_refused_as_json_go_in_as_rows_under_the_same_token(
    warehouse: Warehouse, settings: Settings
) -> None:
    """Whichever way a batch's documents went in, writing them again under the batch's token
    stores nothing twice: a replay after a crash may take the other way."""
    links = [r for r in records() if isinstance(r, IdentityLink)]
    mapping = MAPPINGS[IdentityLink]
    documents = [link.to_bytes() for link in links]

    def stored() -> int:
        return int(warehouse.query("SELECT count() FROM {database}.identities")[0][0])

    as_json = WarehouseWriter(warehouse, WarehouseMetrics(CollectorRegistry()))
    as_json.add_documents("identities", mapping, documents)
    await as_json.flush("batch-1")
    assert stored() == len(links)

    refusing = _RefusesJson(settings.resolved_clickhouse_dsn, warehouse.database)
    try:
        as_rows = WarehouseWriter(refusing, WarehouseMetrics(CollectorRegistry()))
        as_rows.add_documents("identities", mapping, documents)
        await as_rows.flush("batch-1")  # the replay
        assert stored() == len(links)
        as_rows.add_documents("identities", mapping, documents[:1])
        await as_rows.flush("batch-2")  # a new batch is new rows
        assert stored() == len(links) + 1
    finally:
        refusing.close()
    (ids,) = warehouse.query("SELECT groupArray(link_id) FROM {database}.identities")[0]
    assert sorted(ids) == sorted(link.link_id for link in [*links, links[0]])


async def test_an_empty_record_becomes_a_dead_letter_not_a_skipped_line(
    warehouse: Warehouse,
) -> None:
    """ClickHouse's JSON reader skips a blank line; a tombstone must not vanish that way."""
    (link, *_) = [r for r in records() if isinstance(r, IdentityLink)]
    writer = WarehouseWriter(warehouse, WarehouseMetrics(CollectorRegistry()))
    writer.add_documents("identities", MAPPINGS[IdentityLink], [link.to_bytes(), b""])
    await writer.flush("batch-1")
    assert warehouse.query("SELECT link_id FROM {database}.identities") == [(link.link_id,)]
    ((reason, message),) = warehouse.query("SELECT reason, message FROM {database}.dead_letters")
    assert reason == "undecodable" and message.startswith("identities: "), message
