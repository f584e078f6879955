"""Fault 4: the sessionizer's state rebuilt from scratch. Its only copy outside memory is the
changelog topics, so a new instance (a replacement machine, a rebalance) rebuilds every
partition's state from them. After a run over simulated traffic, the state restored from the
changelogs equals, partition by partition, what the running stages hold; the test prints the
restore time per 100,000 visitors (`bench/restore.py` measures it at that size)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from contracts.kafka import read_to_end, write_events
from contracts.settings import Settings
from klantreis.simulator import collected_events
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import IdentityEdge, JourneyEdge, StageWorker
from tests.support.pipeline import committed, committed_offsets

VISITORS = 1500
NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def through(settings: Settings, total: int) -> bool:
    """Both stages committed every record of their input topic."""
    if await committed(settings, settings.topics.identities_group) < total:
        return False
    offsets = await committed_offsets(settings, settings.topics.journeys_group)
    topic = settings.topics.sessionizer_journeys
    records = await read_to_end(str(settings.kafka_bootstrap_servers), topic, 3)
    return all(
        offsets.get((topic, p), 0) > batch[-1].offset for p, batch in records.items() if batch
    )


async def test_state_restored_from_the_changelogs_equals_the_running_state(
    settings: Settings,
) -> None:
    events = collected_events(seed=11, visitors=VISITORS, days=10, now=NOW)
    await write_events(settings, events)
    metrics = SessionizerMetrics(CollectorRegistry())
    identities = StageWorker(settings, metrics, IdentityEdge(settings, metrics))
    journeys = StageWorker(settings, metrics, JourneyEdge(settings, metrics))
    stop = asyncio.Event()
    async with identities, journeys:
        running = [asyncio.create_task(w.run(stop)) for w in (identities, journeys)]
        deadline = time.monotonic() + 180
        while not await through(settings, len(events)):
            assert time.monotonic() < deadline and not any(t.done() for t in running)
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*running)

        compared: dict[str, int] = {}
        seconds = 0.0
        for worker in (identities, journeys):
            live: dict[int, Any] = {p: s.snapshot() for p, s in worker.stages.items()}
            started = time.perf_counter()
            restored = await worker.restored_stages(sorted(live))
            seconds += time.perf_counter() - started
            assert {p: s.snapshot() for p, s in restored.items()} == live
            entries = sum(
                len(v) for snap in live.values() for v in snap.values() if isinstance(v, list)
            )
            compared[worker.stages[0].__class__.__name__] = entries
    assert compared["IdentityStage"] > VISITORS / 2 and compared["JourneyStage"] > VISITORS / 2
    print(
        f"\nstate of {VISITORS} visitors ({len(events)} events) restored from the changelogs, "
        f"equal to the running state ({compared}): {seconds:.2f}s, "
        f"{seconds * 100_000 / VISITORS:.1f}s per 100k visitors"
    )
