"""A quiet shop still gets its signals: on the real broker, a lone visitor's abandoned cart is
signalled although two of the three events partitions never receive an event."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from contracts.journeys import Signal, SignalKind
from contracts.kafka import key_partition, read_to_end, write_events
from contracts.settings import Settings, load_settings
from services.sessionizer.telemetry import SessionizerMetrics
from services.sessionizer.worker import Sessionizer
from tests.support.factories import make_event


def quiet_shop_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's topics, with carts abandoned after 3 s and a clock that follows the wall
    clock after 1 s without events."""
    model = tmp_path / "quick-carts.toml"
    default = (resources.files("contracts.phase_models") / "default.toml").read_text()
    assert 'abandon_after = "1h"' in default
    model.write_text(default.replace('abandon_after = "1h"', 'abandon_after = "3s"'))
    return load_settings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        topic_partitions=3,
        phase_model=str(model),
        allowed_lateness_minutes=0,
        idle_after_seconds=1,
    )


async def test_a_lone_visitors_abandoned_cart_is_signalled_without_more_traffic(
    settings: Settings, tmp_path: Path
) -> None:
    settings = quiet_shop_settings(settings, tmp_path)
    now = datetime.now(UTC)
    events = [
        msgspec.structs.replace(
            make_event("page", visitor="lone-visitor"), timestamp=now, received_at=now
        ),
        msgspec.structs.replace(
            make_event("track", "Product Added", visitor="lone-visitor"),
            timestamp=now + timedelta(seconds=1),
            received_at=now,
        ),
    ]
    assert len({key_partition(event.partition_key, range(3)) for event in events}) == 1
    await write_events(settings, events)  # the two other partitions get nothing, ever

    stop = asyncio.Event()
    registry = CollectorRegistry()
    run = asyncio.create_task(Sessionizer(settings, SessionizerMetrics(registry)).run(stop))
    signals_topic = settings.topics.signals
    due = events[1].timestamp + timedelta(seconds=3)
    try:
        deadline = time.monotonic() + 60
        while True:
            records = await read_to_end(str(settings.kafka_bootstrap_servers), signals_topic, 3)
            signals = [Signal.from_bytes(r.value) for rs in records.values() for r in rs]
            carts = [s for s in signals if s.kind is SignalKind.CART_ABANDONED]
            # What an operator watches: the clock that fires timers (refreshed every few
            # seconds) passes the cart's deadline.
            clock = registry.get_sample_value(
                "klantreis_sessionizer_clock_timestamp_seconds", {"stage": "journeys"}
            )
            if carts and clock is not None and clock >= due.timestamp():
                break
            assert not run.done(), run.result()
            assert time.monotonic() < deadline, f"signals: {signals}; clock: {clock}"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await run
    [cart] = carts
    assert cart.at == due  # when it ran out, not when the clock moved
