"""The sessionizer as a Kafka consumer-group member: the I/O around `core.JourneyEngine`.

Every input partition is an independent, deterministic state machine: its own engine, its own
changelog partition and its own transactional producer. That is what makes a restart, a crash or
a rebalance invisible in the outputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from klantreis.config import Settings
from klantreis.events import EARLIEST_EVENT_TIME, DeadLetter, DeadLetterReason, Event
from klantreis.kafka import RecordBatches, ensure_topics, new_consumer, new_producer
from klantreis.topics import Topics
from services.sessionizer.core import JourneyEngine, JourneyRules, SessionizerOutput
from services.sessionizer.metrics import SessionizerMetrics

log = logging.getLogger(__name__)

GAUGE_INTERVAL_SECONDS = 5.0  # Prometheus scrapes every 15 s or so


@dataclass
class _Partition:
    """What one input partition owns while it is assigned here."""

    tp: TopicPartition
    engine: JourneyEngine
    producer: AIOKafkaProducer


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """State lives per input partition: restored on assignment, released on revoke.

    A rebalance happens inside a poll, while the previous poll's transactions may still be
    committing; a revoke waits for them, so a partition is let go with nothing uncommitted.
    """

    def __init__(self, worker: SessionizerWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.finish_commits()
        await self._worker.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._worker.restore(assigned)


class SessionizerWorker:
    """Reads the events topic; writes sessions, transitions, signals and identity links.

    Commit order, for every polled batch of an input partition, inside one Kafka transaction of
    that partition's producer (transactional id `<group>.<partition>`):
      1. Send the records the engine made of the batch to the output topics.
      2. Send the engine's state changes to the same partition of the changelog.
      3. Add the input offset after the batch to the transaction (send_offsets_to_transaction).
      4. Commit the transaction.
    A `read_committed` reader sees all of a batch's records or none. A crash before 4 leaves an
    open transaction that the next producer with the same id aborts when it starts; the batch is
    read again from the committed offset by an engine restored from the changelog, which holds
    exactly the state after the last committed batch, so the same records come out again.
    """

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        self._settings = settings
        self._topics = Topics.from_settings(settings)
        self._group = self._topics.sessionizer_group
        self._rules = JourneyRules.from_settings(settings)
        self._metrics = metrics
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._committing: list[asyncio.Task[None]] = []  # the previous poll's transactions
        self._failed_commit: Exception | None = None
        self._gauges_updated = 0.0

    @property
    def assigned(self) -> list[TopicPartition]:
        return sorted(self._partitions)

    async def __aenter__(self) -> SessionizerWorker:
        await ensure_topics(self._settings)
        consumer = new_consumer(
            self._settings,
            group_id=self._group,
            # A partition's share of a poll is one transaction: several broker round trips.
            max_poll_records=self._settings.sessionizer_max_poll_records,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.subscribe([self._topics.events], listener=_Assignment(self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            await self.release(list(self._partitions))

    # --- assignment -----------------------------------------------------------------------------

    async def restore(self, assigned: list[TopicPartition]) -> None:
        """Give each newly assigned partition its producer and its state from the changelog.

        The partitions stay paused until then, so no record is processed by an engine that has
        not caught up with the changelog.
        """
        fresh = sorted(tp for tp in assigned if tp not in self._partitions)
        if not fresh:
            return
        consumer = self._require_consumer()
        consumer.pause(*fresh)
        started = time.perf_counter()
        producers: dict[TopicPartition, AIOKafkaProducer] = {}
        try:
            for tp in fresh:
                producer = new_producer(
                    self._settings, transactional_id=f"{self._group}.{tp.partition}"
                )
                producers[tp] = producer
                await producer.start()  # fences the partition's previous producer, aborting it
            engines = await self._restore_engines([tp.partition for tp in fresh])
        except BaseException:
            for producer in producers.values():
                await producer.stop()
            raise
        for tp in fresh:
            self._partitions[tp] = _Partition(tp, engines[tp.partition], producers[tp])
        seconds = time.perf_counter() - started
        self._metrics.restore_seconds.observe(seconds)
        log.info(
            "restored partitions %s (%d journeys) in %.2fs",
            [tp.partition for tp in fresh],
            sum(engine.active_journeys for engine in engines.values()),
            seconds,
        )
        self._update_gauges()
        consumer.resume(*fresh)

    async def _restore_engines(self, partitions: list[int]) -> dict[int, JourneyEngine]:
        engines = {partition: JourneyEngine(self._rules) for partition in partitions}
        changelog = [TopicPartition(self._topics.sessionizer_changelog, p) for p in partitions]
        reader = new_consumer(self._settings, group_id=None, max_poll_records=10_000)
        await reader.start()
        try:
            reader.assign(changelog)
            await reader.seek_to_beginning(*changelog)
            ends = await reader.end_offsets(changelog)
            remaining = {tp for tp in changelog if ends[tp] > 0}
            while remaining:
                batches = await reader.getmany(*remaining, timeout_ms=1000)
                for tp, records in batches.items():
                    engine = engines[tp.partition]
                    for record in records:
                        engine.apply_change(record.key, record.value)
                for tp in list(remaining):
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await reader.stop()
        for engine in engines.values():
            engine.finish_restore()
        return engines

    async def release(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            owned = self._partitions.pop(tp, None)
            if owned is not None:
                await owned.producer.stop()
        self._update_gauges()

    def _update_gauges(self) -> None:
        """Counting open sessions walks every journey held here, so the run loop does this
        every few seconds, not after every poll."""
        self._gauges_updated = time.monotonic()
        engines = [owned.engine for owned in self._partitions.values()]
        self._metrics.active_journeys.set(sum(e.active_journeys for e in engines))
        self._metrics.open_sessions.set(sum(e.journeys.open_sessions for e in engines))
        self._metrics.state_entries.set(sum(e.active_journeys + len(e.identities) for e in engines))

    # --- processing -----------------------------------------------------------------------------

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use `async with SessionizerWorker(...)` before running it")
        return self._consumer

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, process, commit; one poll deep.

        The engines work through a poll's records while the previous poll's transactions are
        still committing (the broker's round trips), and that poll's transactions start only
        once the previous ones are committed: per partition, transactions stay one at a time
        and in order. A failed commit ends the run, and a restart restores every engine from
        its changelog, so work done ahead of a commit that failed is never kept.
        """
        consumer = self._require_consumer()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                if self._failed_commit is not None:
                    # It failed while a rebalance waited for it, inside the poll.
                    raise self._failed_commit
                if not batches:
                    await self.finish_commits()
                    continue
                polled = time.perf_counter()
                prepared = [self._prepare(tp, records) for tp, records in batches.items()]
                await self.finish_commits()
                self._committing = [
                    asyncio.create_task(self._commit(*batch, polled)) for batch in prepared if batch
                ]
                for tp in batches:
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        lag = highwater - await consumer.position(tp)
                        self._metrics.consumer_lag.labels(str(tp.partition)).set(lag)
                if time.monotonic() - self._gauges_updated >= GAUGE_INTERVAL_SECONDS:
                    self._update_gauges()
            await self.finish_commits()
            self._update_gauges()
        finally:
            committing, self._committing = self._committing, []
            await asyncio.gather(*committing, return_exceptions=True)

    async def finish_commits(self) -> None:
        """Wait until the transactions started so far are committed; raise if one failed.

        A failure is also kept, so the run ends even when a rebalance listener (whose errors
        the consumer only logs) was the one waiting: going on would commit later offsets of
        that partition past the records whose outputs were never committed.
        """
        committing, self._committing = self._committing, []
        try:
            await asyncio.gather(*committing)
        except Exception as exc:
            self._failed_commit = exc
            raise

    def _prepare(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[_Partition, RecordBatches, int, int] | None:
        """Run a partition's batch through its engine: the records to write, the offset after
        the batch and the number of events."""
        owned = self._partitions.get(tp)
        if owned is None:
            # Fetched in the instant between assignment and pause: read it again once restored.
            self._require_consumer().seek(tp, records[0].offset)
            return None
        outputs = [output for record in records for output in self._process(owned, record)]
        batches = RecordBatches(owned.producer)
        for output in outputs:
            batches.add(self._topics.topic_of(output), output.to_bytes(), output.partition_key)
        for key, value in owned.engine.take_changes():  # to this partition's changelog
            batches.add(self._topics.sessionizer_changelog, value, key, partition=tp.partition)
        return owned, batches, records[-1].offset + 1, len(records)

    async def _commit(
        self,
        owned: _Partition,
        batches: RecordBatches,
        next_offset: int,
        events: int,
        polled: float,
    ) -> None:
        producer = owned.producer
        async with producer.transaction():
            await batches.send()  # 1. outputs and 2. state changes
            await producer.send_offsets_to_transaction(  # 3. input offsets
                {owned.tp: next_offset}, self._group
            )
        # 4. committed when the transaction block exits without an exception
        self._metrics.events_processed.inc(events)
        self._metrics.batch_seconds.observe(time.perf_counter() - polled)

    def _process(
        self, owned: _Partition, record: ConsumerRecord[bytes, bytes]
    ) -> list[SessionizerOutput]:
        try:
            event = Event.from_bytes(record.value or b"")
        except ValidationError as exc:
            return [self._refused(record, f"{self._topics.events}: {exc.errors()[0]['msg']}")]
        if event.timestamp < EARLIEST_EVENT_TIME:
            return [self._refused(record, f"{self._topics.events}: an event before 1970")]
        engine = owned.engine
        duplicates = engine.identities.duplicates
        outputs = engine.process(event)
        self._metrics.duplicates.inc(engine.identities.duplicates - duplicates)
        self._metrics.count(outputs)
        return outputs

    def _refused(self, record: ConsumerRecord[bytes, bytes], why: str) -> DeadLetter:
        self._metrics.undecodable_events.inc()
        return DeadLetter.of(
            record.value,
            DeadLetterReason.UNDECODABLE,
            why,
            "sessionizer",
            # the record's own time, not the clock: a replay must be identical
            received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )
