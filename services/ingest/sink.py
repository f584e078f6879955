"""Where accepted events go: Kafka in production, the in-process pipeline in embedded mode.

The collector answers 2xx only after `publish` returned, so a sink must not return before the
events are as safe as the sink can make them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from klantreis.events import DeadLetter, Event
from klantreis.topics import Topics


class SinkUnavailable(Exception):
    """The sink could not acknowledge in time; the client should retry (HTTP 503)."""


class EventSink(Protocol):
    async def publish(self, events: Sequence[Event]) -> None: ...

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None: ...

    def is_ready(self) -> bool: ...


class KafkaEventSink:
    """Produces to the events topic, keyed by site and visitor so one visitor stays in order.

    `send_and_wait` can wait for a broker that is gone for as long as its retries last; every
    publish is bounded by `timeout` instead, and a timeout marks the sink not ready until the
    next publish succeeds.
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, timeout: float) -> None:
        self._producer = producer
        self._topics = topics
        self._timeout = timeout
        self._healthy = True

    async def publish(self, events: Sequence[Event]) -> None:
        await self._send_all(
            [(self._topics.events, event.partition_key, event.to_bytes()) for event in events]
        )

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self._send_all(
            [
                (self._topics.dead_letters, letter.partition_key, letter.to_bytes())
                for letter in letters
            ]
        )

    def is_ready(self) -> bool:
        return self._healthy

    async def _send_all(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                acks = [
                    await self._producer.send(topic, value, key=key)
                    for topic, key, value in records
                ]
                await asyncio.gather(*acks)
        except (TimeoutError, KafkaError) as exc:
            self._healthy = False
            raise SinkUnavailable(f"Kafka did not acknowledge the events: {exc!r}") from exc
        self._healthy = True
