"""When Kafka stops, the collector answers 503 fast and says it is not ready; when Kafka
returns, every event that was answered 2xx (at first or on a retry) is in Kafka exactly once.
Throughout, the collector keeps the sites it read from the sites topic."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from contracts.events import Event
from contracts.kafka import ensure_topics, read_to_end
from contracts.settings import load_settings
from klantreis.local_kafka import LocalKafka, free_port
from tests.support.pipeline import SITE, WRITE_KEY
from tests.support.processes import start, wait_for_http

Body = list[dict[str, str]]


def batch(visitor: int) -> Body:
    return [
        {"type": "page", "anonymous_id": f"visitor-{visitor}", "event_id": str(uuid.uuid4())}
        for _ in range(5)
    ]


async def event_ids_in_kafka(bootstrap: str, topic: str, partitions: int) -> Counter[str]:
    records = await read_to_end(bootstrap, topic, partitions)
    return Counter(
        Event.from_bytes(r.value or b"").event_id for batch in records.values() for r in batch
    )


async def test_kafka_down_gives_fast_503s_and_every_2xx_event_lands_once(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka")
    broker.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=f"down-{uuid.uuid4().hex[:8]}",
        topic_partitions=3,
    )
    collector = None
    try:
        await ensure_topics(settings)
        collector = start(
            "ingest",
            ["ingest"],
            {
                "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
                "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
                "PORT": str(port),
            },
            tmp_path,
        )
        wait_for_http(f"{base}/readyz", collector)
        acknowledged: list[str] = []
        refused: list[Body] = []
        async with httpx.AsyncClient(base_url=base, auth=(WRITE_KEY, ""), timeout=30) as client:

            async def send(body: Body) -> int:
                response = await client.post("/v1/events", json=body)
                if response.status_code == 200:
                    acknowledged.extend(event["event_id"] for event in body)
                return response.status_code

            assert {await send(batch(n)) for n in range(10)} == {200}

            broker.stop()
            for n in range(10, 16):
                body = batch(n)
                started = time.monotonic()
                status = await send(body)
                assert status == 503 and time.monotonic() - started < 2.0, status
                refused.append(body)
            assert (await client.get("/readyz")).status_code == 503
            # The sites read before the outage stay in force: keys are still told apart.
            stranger = await client.post("/v1/events", json=batch(99), auth=("unknown-key", ""))
            assert stranger.status_code == 401

            broker.start()
            deadline = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "the collector did not become ready again"
                time.sleep(0.5)
            for body in refused:  # a tracker retries what was refused, with the same ids
                assert await send(body) == 200
            assert {await send(batch(n)) for n in range(16, 22)} == {200}
    finally:
        if collector is not None:
            assert collector.stop(), collector.output()
        try:
            seen = await event_ids_in_kafka(broker.bootstrap_servers, settings.topics.events, 3)
        finally:
            broker.stop()

    assert len(acknowledged) == 22 * 5
    assert {event_id: seen[event_id] for event_id in acknowledged} == dict.fromkeys(acknowledged, 1)
