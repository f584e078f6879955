"""Erasure on the real broker: a customer with two devices and an order leaves no row, no
sessionizer state and no live changelog key behind; the figures drop by exactly that customer,
and every other customer's rows are unchanged."""

from __future__ import annotations

import asyncio

import pytest

from contracts.kafka import read_to_end
from contracts.settings import Settings
from services.metrics.warehouse import Warehouse
from tests.support.carol import CAROL, LAPTOP, PHONE, shop_events
from tests.support.pipeline import SITE, WRITE_KEY
from tests.support.services import pipeline

RAW = ("events", "sessions", "phase_transitions", "signals", "identities", "dead_letters")


def names_carol(text: str) -> bool:
    return any(needle in text for needle in (CAROL, PHONE, LAPTOP))


def rows(warehouse: Warehouse) -> dict[str, set[str]]:
    """Every row of every raw table, as text (collapsed: the newest version of a session)."""
    return {
        table: {
            repr(row)
            for row in warehouse.query(
                f"SELECT * FROM {{database}}.{table}{'' if table == 'dead_letters' else ' FINAL'}"
            )
        }
        for table in RAW
    }


async def settled(warehouse: Warehouse) -> dict[str, set[str]]:
    """The rows, once three looks a second apart find the same."""
    seen: list[dict[str, set[str]]] = []
    while len(seen) < 3 or not (seen[-1] == seen[-2] == seen[-3]):
        await asyncio.sleep(1)
        seen.append(await asyncio.to_thread(rows, warehouse))
    return seen[-1]


async def live_keys(settings: Settings, topic: str) -> dict[bytes, bytes]:
    """A compacted topic's state: each key's newest value, keys whose newest is a tombstone
    left out (what a restore reads, and what compaction keeps)."""
    records = await read_to_end(
        str(settings.kafka_bootstrap_servers), topic, settings.topic_partitions
    )
    latest: dict[bytes, bytes | None] = {}
    for batch in records.values():
        for record in batch:
            latest[record.key or b""] = record.value
    return {key: value for key, value in latest.items() if value is not None}


async def test_an_erased_customer_leaves_nothing_behind(
    settings: Settings, warehouse: Warehouse
) -> None:
    stream = shop_events(25)
    async with pipeline(settings, warehouse) as (collector, reader):
        for event in stream:
            response = await collector.post("/v1/events", json=event, auth=(WRITE_KEY, ""))
            assert response.status_code in (200, 400), response.text
        before = await settled(warehouse)
        metrics_before = (await reader.get("/api/v1/metrics", params={"site": SITE})).json()
        funnel_before = (await reader.get("/api/v1/funnel", params={"site": SITE})).json()
        assert all(any(names_carol(r) for r in before[t]) for t in RAW if t != "signals")
        changelog = settings.topics.identities_changelog
        assert any(names_carol(k.decode()) for k in await live_keys(settings, changelog))

        asked = await reader.delete(f"/api/v1/customers/{CAROL}", params={"site": SITE})
        assert asked.status_code == 202, asked.text
        erasure_id = asked.json()["erasure_id"]
        for _ in range(1200):
            state = (await reader.get(f"/api/v1/admin/erasures/{erasure_id}")).json()
            if state["status"] != "pending":
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "complete", state
        after = await settled(warehouse)
        metrics_after = (await reader.get("/api/v1/metrics", params={"site": SITE})).json()
        funnel_after = (await reader.get("/api/v1/funnel", params={"site": SITE})).json()
        journey = await reader.get(f"/api/v1/customers/{CAROL}/journey", params={"site": SITE})
        changelogs = (settings.topics.identities_changelog, settings.topics.journeys_changelog)
        live = {topic: await live_keys(settings, topic) for topic in changelogs}

        # carol's phone, afterwards: a new history, linked to no one
        await collector.post(
            "/v1/events", json={"type": "page", "anonymous_id": PHONE}, auth=(WRITE_KEY, "")
        )
        await settled(warehouse)
        relinked = await reader.get(f"/api/v1/customers/{CAROL}/journey", params={"site": SITE})

    assert journey.status_code == 404 and relinked.status_code == 404
    for table in RAW:
        assert not any(names_carol(r) for r in after[table]), table
        assert after[table] == {r for r in before[table] if not names_carol(r)}, table
    for topic, keys in live.items():
        assert not [k for k, v in keys.items() if names_carol(k.decode() + v.decode())], topic
    reach_before = {p["phase"]: p["journeys"] for p in funnel_before["phases"]}
    reach_after = {p["phase"]: p["journeys"] for p in funnel_after["phases"]}
    dropped = {phase: reach_before[phase] - reach_after[phase] for phase in reach_before}
    assert dropped == {
        "awareness": 1,
        "consideration": 1,
        "purchase": 1,
        "retention": 0,
        "advocacy": 0,
    }
    assert metrics_before["orders"] - metrics_after["orders"] == 1
    assert metrics_before["revenue"] - metrics_after["revenue"] == pytest.approx(80)
    assert metrics_before["buyers"] - metrics_after["buyers"] == 1
    assert state["seconds"] < 60 * 60
