"""Where accepted events go: Kafka in production, the in-process pipeline in embedded mode.

The collector answers 2xx only after `publish` returned, so a sink must not return before the
events are as safe as the sink can make them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.events import DeadLetter, Event
from contracts.topics import Topics

ORPHAN_TTL_SECONDS = 600.0


class SinkUnavailable(Exception):
    """The sink could not acknowledge in time; the client should retry (HTTP 503)."""


class EventSink(Protocol):
    async def publish(self, events: Sequence[Event]) -> None: ...

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None: ...

    async def ready(self) -> bool: ...


class KafkaEventSink:
    """Produces to the events topic, keyed by site and visitor so one visitor stays in order.

    Every publish is bounded by `timeout` (aiokafka keeps a batch for a broker that is gone until
    the broker returns), and a timeout marks the sink not ready until Kafka answers again.

    A send that timed out is not withdrawn: it is delivered when Kafka returns. So the sends of
    a request answered 503 are remembered for a while, and when the client retries, an event
    whose earlier send is still pending waits for it, and one already delivered is not sent
    again: an event answered 2xx is in Kafka once. (Behind a load balancer a retry can reach
    another collector; the sessionizer and the warehouse drop such a repeat by its event_id.)
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, timeout: float) -> None:
        self._producer = producer
        self._topics = topics
        self._timeout = timeout
        self._healthy = True
        self._orphans: dict[tuple[str, str], tuple[asyncio.Future[object], float]] = {}

    async def publish(self, events: Sequence[Event]) -> None:
        self._forget_stale_orphans()
        keys = [(event.site_id, event.event_id) for event in events]
        acks: list[asyncio.Future[object]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                for key, event in zip(keys, events, strict=True):
                    earlier = self._earlier_send(key) if self._orphans else None
                    if earlier is None:
                        earlier = await self._producer.send(
                            self._topics.events, event.to_bytes(), key=event.partition_key
                        )
                    acks.append(earlier)
            # Unlike a timeout around gather, wait leaves the sends running when time is up:
            # they stay as orphans for the client's retry.
            if not acks:
                return
            done, pending = await asyncio.wait(acks, timeout=max(0.0, deadline - loop.time()))
            failures = [ack.exception() for ack in done]
            if pending:
                raise TimeoutError(f"{len(pending)} of {len(acks)} sends unacknowledged")
            for failure in failures:
                if failure is not None:
                    raise failure
        except (TimeoutError, KafkaError) as exc:
            self._healthy = False
            now = time.monotonic()
            for key, ack in zip(keys, acks, strict=False):  # the events sent before the timeout
                if not ack.done():
                    self._orphans.pop(key, None)  # re-inserted last: the dict stays oldest first
                    self._orphans[key] = (ack, now)
            raise SinkUnavailable(f"Kafka did not acknowledge the events: {exc!r}") from exc
        if self._orphans:
            for key in keys:
                self._orphans.pop(key, None)
        self._healthy = True

    def _forget_stale_orphans(self) -> None:
        """Orphans are kept oldest first, so the stale ones are at the front."""
        now = time.monotonic()
        while self._orphans:
            oldest = next(iter(self._orphans))
            if now - self._orphans[oldest][1] <= ORPHAN_TTL_SECONDS:
                break
            del self._orphans[oldest]

    def _earlier_send(self, key: tuple[str, str]) -> asyncio.Future[object] | None:
        """The still useful send of this event from a request answered 503, if any."""
        entry = self._orphans.get(key)
        if entry is None:
            return None
        ack = entry[0]
        if ack.done() and (ack.cancelled() or ack.exception() is not None):
            del self._orphans[key]
            return None  # it failed: send again
        return ack

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                acks = [
                    await self._producer.send(
                        self._topics.dead_letters, letter.to_bytes(), key=letter.partition_key
                    )
                    for letter in letters
                ]
                await asyncio.gather(*acks)
        except (TimeoutError, KafkaError) as exc:
            self._healthy = False
            raise SinkUnavailable(f"Kafka did not acknowledge the dead letters: {exc!r}") from exc

    async def ready(self) -> bool:
        """After a failure, ready again only once the brokers answer a metadata request."""
        if not self._healthy:
            try:
                self._healthy = bool(
                    await asyncio.wait_for(self._producer.client.force_metadata_update(), 1.0)
                )
            except TimeoutError:
                return False
        return self._healthy
