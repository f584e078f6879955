"""The metrics worker: every topic the pipeline writes, into ClickHouse, in large batches."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from contracts.erasure import is_command
from contracts.kafka import ensure_topics, new_consumer
from contracts.settings import Settings
from services.metrics.rows import MAPPINGS
from services.metrics.telemetry import WarehouseMetrics
from services.metrics.warehouse import Warehouse
from services.metrics.writer import Batch, WarehouseWriter

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 5)
Ranges = dict[TopicPartition, tuple[int, int]]  # first and last offset of a batch, inclusive


@dataclass(frozen=True)
class BatchPlan:
    token: str
    ranges: Ranges

    @classmethod
    def of(cls, ranges: Ranges) -> BatchPlan:
        described = ",".join(
            f"{tp.topic}/{tp.partition}/{first}-{last}"
            for tp, (first, last) in sorted(ranges.items())
        )
        return cls(hashlib.sha256(described.encode()).hexdigest(), dict(ranges))


class _FlushBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: MetricsWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Rows consumed from a partition must be written and committed while this worker still
        # owns it; otherwise the new owner replays them under a different batch boundary.
        await self._worker.flush()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("metrics worker assigned %s", sorted(str(tp) for tp in assigned))
        await self._worker.resume_unfinished_batch(set(assigned))


class MetricsWorker:
    """Consumes every topic the pipeline writes into the warehouse.

    Commit order, at every flush:
      1. Record the batch's plan (its offset ranges and the token derived from them) in
         `metrics_batches`.
      2. Insert the buffered rows, one insert per table, each carrying the plan's token
         (ClickHouse drops an insert whose token it has seen).
      3. Commit, to the consumer group, the offsets after the last record of those rows.
    A crash between 2 and 3 leaves a plan whose offsets were not committed. On restart the
    worker finds it, consumes exactly those ranges again (holding back anything past them) and
    inserts them under the same token, so nothing is stored twice; then it commits and goes on.
    One batch is written (1-3) while the next is read and decoded; the next batch's plan is
    recorded only after the previous batch was committed, so batches commit one at a time, in
    order, and the newest plan is the only one that can be unfinished. A failed insert is
    retried with the same token (and the same rows); one that keeps failing stops the worker.
    If a crash coincides with a rebalance that gives part of the plan's partitions to another
    worker, the plan cannot be re-formed: the new owners insert those rows under new tokens, the
    replacing tables collapse the copies on merge, and the aggregates (sets of ids) are unaffected.
    """

    def __init__(self, settings: Settings, warehouse: Warehouse, metrics: WarehouseMetrics) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._warehouse = warehouse
        self._metrics = metrics
        self._writer = WarehouseWriter(warehouse, metrics)
        self._mappings = {topic: MAPPINGS[t] for topic, t in self._topics.record_types().items()}
        self._ranges: Ranges = {}
        self._replay: BatchPlan | None = None  # an unfinished batch being re-formed
        self._held: list[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = []
        self._oldest_pending: float | None = None
        self._inflight: asyncio.Task[None] | None = None  # the batch being written
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> MetricsWorker:
        await ensure_topics(self._settings)
        consumer = new_consumer(
            self._settings, group_id=self._topics.metrics_group, max_poll_records=5000
        )
        await consumer.start()
        self._consumer = consumer
        assert set(self._mappings) == set(self._topics.outputs()), "every output topic written"
        consumer.subscribe(list(self._mappings), listener=_FlushBeforeRevoke(self))
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
            if self._inflight is not None and not self._inflight.done():
                # Not committed, so the group reads it again: the next run re-forms it.
                self._inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._inflight
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._require_consumer()
        interval = self._settings.flush_interval_seconds
        while not stop.is_set():
            if self._inflight is not None and self._inflight.done():
                await self._wait_written()  # raises what made the write fail
            batches = await consumer.getmany(
                timeout_ms=int(interval * 1000), max_records=self._settings.flush_rows
            )
            for tp, records in batches.items():
                self._take(tp, records)
            await self._observe_lag(consumer, batches)
            if self._replay is not None:
                if self._replay_complete():
                    await self.flush(consumer, stop)
                continue
            due = (
                self._oldest_pending is not None
                and time.monotonic() - self._oldest_pending >= interval
            )
            if self._writer.fullest_table_rows >= self._settings.flush_rows or due:
                await self._start_flush(consumer, stop)

    def _take(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        if self._replay is not None:
            # Re-forming a batch: only its ranges go in; everything else waits for the next one.
            last = self._replay.ranges.get(tp, (0, -1))[1]
            within = [r for r in records if r.offset <= last]
            beyond = [r for r in records if r.offset > last]
            if beyond:
                self._held.append((tp, beyond))
            if beyond or (within and within[-1].offset == last):
                self._require_consumer().pause(tp)  # its part of the batch is complete
            records = within
            if not records:
                return
        # Commands on the events topic (erasures) are for the sessionizer; they are no rows.
        documents = [r.value or b"" for r in records if not is_command(r.headers)]
        if documents:
            self._writer.add_documents(tp.topic, self._mappings[tp.topic], documents)
        self._metrics.records_consumed.labels(tp.topic).inc(len(records))
        first = self._ranges.get(tp, (records[0].offset, 0))[0]
        self._ranges[tp] = (first, records[-1].offset)
        if self._oldest_pending is None:
            self._oldest_pending = time.monotonic()

    def _replay_complete(self) -> bool:
        assert self._replay is not None
        return self._ranges == self._replay.ranges

    async def resume_unfinished_batch(self, assigned: set[TopicPartition]) -> None:
        """After an assignment: if this group's newest batch plan was inserted (maybe) but its
        offsets were not committed, re-form exactly that batch before anything else."""
        consumer = self._require_consumer()
        rows = await asyncio.to_thread(
            self._warehouse.query,
            "SELECT token, arrayMap(r -> tuple(r.1, r.2, r.3, r.4), ranges) "
            "FROM {database}.metrics_batches "
            "WHERE group_id = {group:String} ORDER BY planned_at DESC LIMIT 1",
            {"group": self._topics.metrics_group},
        )
        if not rows:
            return
        token, raw_ranges = rows[0]
        plan = BatchPlan(
            token,
            {
                TopicPartition(t, int(p)): (int(first), int(last))
                for t, p, first, last in raw_ranges
            },
        )
        committed = {tp: await consumer.committed(tp) for tp in plan.ranges}
        if all((committed[tp] or 0) > last for tp, (_, last) in plan.ranges.items()):
            return  # the newest batch was committed: nothing unfinished
        # Not yet committed: the group's offset is at or before the batch's first record (the
        # offset after the previous batch may be a transaction marker, not a record).
        if not set(plan.ranges) <= assigned or any(
            committed[tp] is not None and committed[tp] > first
            for tp, (first, _) in plan.ranges.items()
        ):
            log.warning(
                "unfinished batch %s cannot be re-formed here (its partitions moved); its rows"
                " are inserted again under new tokens and collapse on merge",
                plan.token[:12],
            )
            return
        log.info("re-forming unfinished batch %s: %s", plan.token[:12], plan.ranges)
        self._replay = plan
        # Only the batch's partitions are read until it is complete, so what arrives meanwhile
        # stays small and the next batch keeps its usual size.
        consumer.pause(*(assigned - set(plan.ranges)))

    async def flush(
        self, consumer: AIOKafkaConsumer | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Write and commit everything consumed so far; returns once it is committed."""
        await self._start_flush(consumer, stop)
        await self._wait_written()

    async def _start_flush(
        self, consumer: AIOKafkaConsumer | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Take what was consumed as a batch and start writing it; the previous batch is
        committed first."""
        consumer = consumer or self._require_consumer()
        async with self._lock:
            await self._wait_written()
            if self._replay is not None and not self._replay_complete():
                # Revoked half-way through re-forming: the new owner re-forms it instead.
                self._writer.clear()
                self._abandon_replay()
                return
            if not self._ranges:
                return
            replaying = self._replay is not None
            plan = self._replay or BatchPlan.of(self._ranges)
            batch = self._writer.take()
            self._ranges = {}
            self._oldest_pending = None
            self._inflight = asyncio.create_task(
                self._write(consumer, stop, plan, batch, record_plan=not replaying)
            )
            if replaying:
                await self._wait_written()
                self._replay = None
                consumer.resume(*consumer.paused())
                held, self._held = self._held, []
                for tp, records in held:
                    self._take(tp, records)

    async def _write(
        self,
        consumer: AIOKafkaConsumer,
        stop: asyncio.Event | None,
        plan: BatchPlan,
        batch: Batch,
        record_plan: bool,
    ) -> None:
        if record_plan:
            await self._retrying(stop, self._record_plan, plan)  # 1. the plan
        await self._retrying(stop, self._writer.write, batch, plan.token)  # 2. the rows
        await consumer.commit(  # 3. the offsets after the inserted records
            {tp: last + 1 for tp, (_, last) in plan.ranges.items()}
        )

    async def _wait_written(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def _abandon_replay(self) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._consumer.paused())
        self._replay = None
        self._held = []
        self._ranges = {}
        self._oldest_pending = None

    async def _record_plan(self, plan: BatchPlan) -> None:
        ranges = [
            (tp.topic, tp.partition, first, last)
            for tp, (first, last) in sorted(plan.ranges.items())
        ]
        await asyncio.to_thread(
            self._warehouse.insert,
            "metrics_batches",
            ("group_id", "token", "ranges", "planned_at"),
            [(self._topics.metrics_group, plan.token, ranges, datetime.now(UTC))],
            f"{plan.token}:plan",
        )

    async def _retrying(
        self, stop: asyncio.Event | None, step: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        for attempt, backoff in enumerate((*RETRY_BACKOFF_SECONDS, None)):
            try:
                await step(*args)
                return
            except Exception:
                if backoff is None or (stop is not None and stop.is_set()):
                    raise
                log.exception("insert failed (attempt %d); retrying", attempt + 1)
                await asyncio.sleep(backoff)

    async def _observe_lag(
        self, consumer: AIOKafkaConsumer, polled: Iterable[TopicPartition]
    ) -> None:
        for tp in polled:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = highwater - await consumer.position(tp)
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use `async with MetricsWorker(...)` before running it")
        return self._consumer
