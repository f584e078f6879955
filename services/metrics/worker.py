"""The metrics worker: every topic the pipeline writes, into ClickHouse, in large batches."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from types import TracebackType

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from klantreis.config import Settings
from klantreis.events import DeadLetter, DeadLetterReason, Event
from klantreis.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal
from klantreis.kafka import ensure_topics, new_consumer
from klantreis.topics import Topics
from services.metrics.metrics import WarehouseMetrics
from services.metrics.rows import Record
from services.metrics.warehouse import Warehouse
from services.metrics.writer import WarehouseWriter

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 5)


class _FlushBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: MetricsWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Rows consumed from a partition must be written and committed while this worker still
        # owns it; otherwise the new owner replays them under a different batch boundary.
        await self._worker.flush()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("metrics worker assigned %s", sorted(str(tp) for tp in assigned))


class MetricsWorker:
    """Consumes every topic the pipeline writes into the warehouse.

    Commit order, at every flush:
      1. Insert the buffered rows, one insert per table, each carrying a deduplication token
         derived from the consumed offset ranges (ClickHouse drops a repeated token).
      2. Commit, to the consumer group, the offsets after the last record of those rows.
    A crash between 1 and 2 makes the group replay from the last commit; a replay of the same
    range is dropped by its token, and rows that still arrive twice (a different range after a
    rebalance) carry the same ids, which the replacing tables collapse. A failed insert is
    retried with the same token while consumption waits, so the token keeps naming one range.
    """

    def __init__(self, settings: Settings, warehouse: Warehouse, metrics: WarehouseMetrics) -> None:
        self._settings = settings
        self._topics = Topics.from_settings(settings)
        self._metrics = metrics
        self._writer = WarehouseWriter(warehouse, metrics)
        self._decoders: dict[str, type[Record]] = {
            self._topics.events: Event,
            self._topics.sessions: SessionSnapshot,
            self._topics.transitions: PhaseTransition,
            self._topics.dead_letters: DeadLetter,
            self._topics.signals: Signal,
            self._topics.identities: IdentityLink,
        }
        self._ranges: dict[TopicPartition, tuple[int, int]] = {}
        self._oldest_pending: float | None = None
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> MetricsWorker:
        await ensure_topics(self._settings)
        consumer = new_consumer(
            self._settings, group_id=self._topics.metrics_group, max_poll_records=5000
        )
        await consumer.start()
        self._consumer = consumer
        assert set(self._decoders) == set(self._topics.outputs()), "every output topic decoded"
        consumer.subscribe(list(self._decoders), listener=_FlushBeforeRevoke(self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            if exc is None:
                await self.flush(consumer)
        finally:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._require_consumer()
        interval = self._settings.flush_interval_seconds
        while not stop.is_set():
            batches = await consumer.getmany(
                timeout_ms=int(interval * 1000), max_records=self._settings.flush_rows
            )
            for tp, records in batches.items():
                self._writer.add(self._decode(tp.topic, record.value) for record in records)
                first = self._ranges.get(tp, (records[0].offset, 0))[0]
                self._ranges[tp] = (first, records[-1].offset)
                if self._oldest_pending is None:
                    self._oldest_pending = time.monotonic()
            due = (
                self._oldest_pending is not None
                and time.monotonic() - self._oldest_pending >= interval
            )
            if self._writer.pending_rows >= self._settings.flush_rows or due:
                await self.flush(consumer, stop)

    async def flush(
        self, consumer: AIOKafkaConsumer | None = None, stop: asyncio.Event | None = None
    ) -> None:
        consumer = consumer or self._require_consumer()
        async with self._lock:
            if not self._ranges:
                return
            token = self._dedup_token()
            for attempt, backoff in enumerate((*RETRY_BACKOFF_SECONDS, None)):
                try:
                    await self._writer.flush(token)  # 1. insert, tokens derived from offsets
                    break
                except Exception:
                    if backoff is None or (stop is not None and stop.is_set()):
                        raise
                    log.exception("insert failed (attempt %d); retrying", attempt + 1)
                    await asyncio.sleep(backoff)
            await consumer.commit(  # 2. commit the offsets after the inserted records
                {tp: last + 1 for tp, (_, last) in self._ranges.items()}
            )
            self._ranges.clear()
            self._oldest_pending = None

    def _dedup_token(self) -> str:
        ranges = ",".join(
            f"{tp.topic}/{tp.partition}/{first}-{last}"
            for tp, (first, last) in sorted(self._ranges.items())
        )
        return hashlib.sha256(ranges.encode()).hexdigest()

    def _decode(self, topic: str, value: bytes | None) -> Record:
        try:
            return self._decoders[topic].model_validate_json(value or b"")
        except ValidationError as exc:
            self._metrics.undecodable_records.labels(topic).inc()
            return DeadLetter.of(
                value, DeadLetterReason.UNDECODABLE, f"{topic}: {exc.errors()[0]['msg']}", "metrics"
            )

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use `async with MetricsWorker(...)` before running it")
        return self._consumer
