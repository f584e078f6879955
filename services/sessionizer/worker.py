"""The sessionizer as a Kafka consumer-group member: the I/O around `core.Sessionizer`."""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from klantreis.config import Settings
from klantreis.events import DeadLetter, DeadLetterReason, Event
from klantreis.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal
from klantreis.kafka import ensure_topics, new_consumer, new_producer
from klantreis.topics import Topics
from services.sessionizer.core import JourneyEngine, JourneyRules, SessionizerOutput
from services.sessionizer.metrics import SessionizerMetrics

log = logging.getLogger(__name__)


class _PartitionState(ConsumerRebalanceListener):  # type: ignore[misc]
    """State lives per input partition: created on assignment, released on revoke.

    Offsets are committed after every batch, so at a revoke nothing is left uncommitted.
    """

    def __init__(self, worker: SessionizerWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._worker.partitions.pop(tp, None)
        self._worker.update_gauges()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._worker.partitions.setdefault(tp, self._worker.new_sessionizer())
        log.info("sessionizer assigned %s", sorted(str(tp) for tp in assigned))
        self._worker.update_gauges()


class SessionizerWorker:
    """Reads the events topic; writes session snapshots and phase transitions.

    Commit order, for every polled batch:
      1. Feed each record to its partition's Sessionizer and send every output through the
         idempotent, acks=all producer.
      2. Wait until Kafka has acknowledged all outputs of the batch.
      3. Commit the input offsets after the batch's last records.
    A crash before 3 replays the batch; its outputs are produced again with the same
    deterministic ids, and the warehouse's replacing tables collapse them.
    """

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        self._settings = settings
        self._topics = Topics.from_settings(settings)
        self._rules = JourneyRules.from_settings(settings)
        self._metrics = metrics
        self.partitions: dict[TopicPartition, JourneyEngine] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    def new_sessionizer(self) -> JourneyEngine:
        return JourneyEngine(self._rules)

    def update_gauges(self) -> None:
        self._metrics.active_journeys.set(
            sum(engine.active_journeys for engine in self.partitions.values())
        )

    async def __aenter__(self) -> SessionizerWorker:
        await ensure_topics(self._settings)
        producer = new_producer(self._settings)
        consumer = new_consumer(self._settings, group_id=self._topics.sessionizer_group)
        await producer.start()
        try:
            await consumer.start()
        except BaseException:
            await producer.stop()
            raise
        consumer.subscribe([self._topics.events], listener=_PartitionState(self))
        self._producer, self._consumer = producer, consumer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            if producer is not None:
                await producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        if self._consumer is None or self._producer is None:
            raise RuntimeError("use `async with SessionizerWorker(...)` before running it")
        consumer, producer = self._consumer, self._producer
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            started = time.perf_counter()
            acks: list[asyncio.Future[object]] = []
            for tp, records in batches.items():
                sessionizer = self.partitions.setdefault(tp, self.new_sessionizer())
                for record in records:
                    acks.extend(await self._process(producer, sessionizer, record.value))
            await asyncio.gather(*acks)  # 2. outputs acknowledged
            await consumer.commit(  # 3. input offsets after the batch
                {tp: records[-1].offset + 1 for tp, records in batches.items()}
            )
            self.update_gauges()
            self._metrics.batch_seconds.observe(time.perf_counter() - started)

    def _topic_of(self, output: SessionizerOutput) -> str:
        if isinstance(output, SessionSnapshot):
            return self._topics.sessions
        if isinstance(output, PhaseTransition):
            self._metrics.transitions.labels(output.to_phase).inc()
            return self._topics.transitions
        if isinstance(output, Signal):
            return self._topics.signals
        if isinstance(output, IdentityLink):
            return self._topics.identities
        return self._topics.dead_letters

    async def _process(
        self, producer: AIOKafkaProducer, sessionizer: JourneyEngine, value: bytes | None
    ) -> list[asyncio.Future[object]]:
        """1. Feed one record to the core and send its outputs; return the send futures."""
        try:
            event = Event.from_bytes(value or b"")
        except ValidationError as exc:
            self._metrics.undecodable_events.inc()
            letter = DeadLetter.of(
                value,
                DeadLetterReason.UNDECODABLE,
                f"{self._topics.events}: {exc.errors()[0]['msg']}",
                "sessionizer",
            )
            return [await producer.send(self._topics.dead_letters, letter.to_bytes(), key=b"")]
        self._metrics.events_processed.inc()
        acks = []
        for output in sessionizer.process(event):
            topic = self._topic_of(output)
            acks.append(await producer.send(topic, output.to_bytes(), key=output.partition_key))
        return acks
