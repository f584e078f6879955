"""No client IP address is kept anywhere: a simulated day sent from many addresses, directly and
through a proxy (`X-Forwarded-For`), with addresses in the events and refused events among them,
leaves none in any topic (the sessionizer's state changelogs included), table, log line or
metric."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contracts.kafka import read_to_end
from contracts.settings import Settings
from klantreis.simulator import generate_journeys
from services.ingest.app import create_app as create_ingest_app
from services.metrics.warehouse import Warehouse
from tests.support.pipeline import WRITE_KEY
from tests.support.services import eventually, pipeline, scalar

PROXY = "10.1.2.3"
MARKER = "/page-seen-by-the-search"  # found in the sinks: the search reads what was stored


def address_of(visitor: int) -> str:
    return f"203.0.113.{visitor + 1}" if visitor % 2 else f"2001:db8::{visitor + 1:x}"


def sent_stream(journeys: list[list[dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Every visitor's events in time order (as a live shop sends them), with their visitor."""
    stream = sorted(
        (event["timestamp"], visitor, position, event)
        for visitor, journey in enumerate(journeys)
        for position, event in enumerate(journey)
    )
    return [(visitor, event) for _, visitor, _, event in stream]


async def test_no_client_address_reaches_any_sink(
    settings: Settings, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings.model_copy(update={"forwarded_for_hops": 1, "rate_limit_per_ip": 0})
    journeys = generate_journeys(5, 30, 1, now=datetime.now(UTC))
    addresses = {address_of(v) for v in range(len(journeys))} | {PROXY}
    collector = create_ingest_app(settings)
    accepted = refused = 0
    async with pipeline(settings, warehouse, collector) as (_, reader):
        clients = {
            visitor: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=collector, client=(address_of(visitor), 40000)),
                base_url="http://c",
            )
            for visitor in range(len(journeys))
        }
        try:
            for number, (visitor, event) in enumerate(sent_stream(journeys)):
                client, address = clients[visitor], address_of(visitor)
                forwarded = {"X-Forwarded-For": f"{PROXY}, {address}"} if number % 2 else {}
                event = {**event, "context": {**event.get("context", {}), "ip": address}}
                if number == 0:
                    event["context"]["page"] = {"path": MARKER}
                if number % 7 == 0:  # refused: no id, and the address in it twice
                    body: Any = [{"type": "page", "context": {"ip": address}}, event]
                    body[0]["properties"] = {"client": address}
                else:
                    body = event
                response = await client.post(
                    "/v1/events", json=body, auth=(WRITE_KEY, ""), headers=forwarded
                )
                assert response.status_code == 200, response.text
                accepted += response.json()["accepted"]
                refused += len(response.json().get("rejected", []))
        finally:
            for client in clients.values():
                await client.aclose()
        await eventually(
            lambda: (
                scalar(warehouse, "SELECT count() FROM {database}.events") == accepted
                and scalar(warehouse, "SELECT count() FROM {database}.dead_letters") == refused
            )
        )
        assert (await reader.get("/api/v1/metrics", params={"site": "shop"})).status_code == 200
        exposition = (await httpx.AsyncClient(
            transport=httpx.ASGITransport(app=collector),
            base_url=f"http://c:{settings.ingest_ops_port}",
        ).get("/metrics")).text  # fmt: skip
    assert refused > 0 and accepted > 100

    sinks: dict[str, str] = {"metrics": exposition}
    for topic in settings.topics.all():
        partitions = settings.topics.partitions_of(topic, settings.topic_partitions)
        records = await read_to_end(str(settings.kafka_bootstrap_servers), topic, partitions)
        sinks[f"topic {topic}"] = "\n".join(
            (r.key or b"").decode(errors="replace")
            + " "
            + (r.value or b"").decode(errors="replace")
            for batch in records.values()
            for r in batch
        )
    tables = warehouse.query(
        "SELECT name FROM system.tables WHERE database = '{database}' AND engine NOT LIKE '%View'"
    )
    for (table,) in tables:
        # Aggregate states keep numbers or 64-bit hashes of what they count, never the values.
        columns = warehouse.query(
            "SELECT name FROM system.columns WHERE database = '{database}' AND table = "
            f"'{table}' AND type NOT LIKE 'AggregateFunction%' AND default_kind != 'EPHEMERAL'"
        )
        listed = ", ".join(f"`{name}`" for (name,) in columns)
        sinks[f"table {table}"] = repr(
            warehouse.query(f"SELECT {listed} FROM {{database}}.{table}")
        )
    sinks["logs"] = "\n".join(
        logging.Formatter("%(message)s %(exc_text)s").format(record) for record in caplog.records
    )

    assert MARKER in sinks[f"topic {settings.topics.events}"] and MARKER in sinks["table events"]
    assert "[ip]" in sinks["table dead_letters"]
    found = {
        (sink, address) for sink, text in sinks.items() for address in addresses if address in text
    }
    assert found == set()
