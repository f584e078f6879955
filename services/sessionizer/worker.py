"""The sessionizer as Kafka consumer-group members: the I/O around the two stages of `stages`
(identities by device, journeys by customer).

Each stage is its own consumer group: a `StageWorker` (assignment, restore, transactions) with
the stage's edge, an `IdentityEdge` or a `JourneyEdge` (its topics, and what it makes of a batch
of records). Every input partition of a stage is an independent, deterministic state machine:
its own stage instance, its own changelog partition and its own transactional producer. That is
what makes a restart, a crash or a rebalance invisible in the outputs. `Sessionizer` runs both
stages' workers in one process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.erasure import EraseCommand, is_command
from contracts.events import (
    EARLIEST_EVENT_TIME,
    DeadLetter,
    DeadLetterReason,
    Event,
    RecordError,
)
from contracts.kafka import RecordBatches, ensure_topics, new_consumer, new_producer, ride_out
from contracts.records import SessionizerOutput
from contracts.settings import Settings
from services.sessionizer.config import journey_rules
from services.sessionizer.encoding import (
    changelog_record,
    routed_from_record,
    routed_headers,
    routed_value,
    state_change,
)
from services.sessionizer.stages import (
    IdentityStage,
    JourneyStage,
    Routed,
    StateChange,
    upstream_watermarks,
)
from services.sessionizer.telemetry import SessionizerMetrics

log = logging.getLogger(__name__)

GAUGE_INTERVAL_SECONDS = 5.0  # Prometheus scrapes every 15 s or so


class PartitionStage(Protocol):
    """What the worker needs of a stage's per-partition stage besides processing."""

    def take_changes(self) -> list[StateChange]: ...

    def apply_change(self, change: StateChange) -> None: ...

    def finish_restore(self) -> None: ...


Stage = TypeVar("Stage", bound=PartitionStage)


@dataclass
class OwnedPartition(Generic[Stage]):
    """What one input partition owns while it is assigned here."""

    tp: TopicPartition
    stage: Stage
    producer: AIOKafkaProducer


# What a transaction of a partition holds: its records and state changes, the input offset
# after them (None when no record was read: the clock moved) and the records to count.
_Prepared = tuple[OwnedPartition[Stage], RecordBatches, int | None, int]


class StageEdge(ABC, Generic[Stage]):
    """One stage: its topics and group, and what it makes of a batch of its input."""

    name: str  # for metrics and logs
    input_topic: str
    changelog: str
    group: str  # also the prefix of the partitions' transactional ids

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        self.topics = settings.topics
        self.rules = journey_rules(settings)
        self.metrics = metrics

    @abstractmethod
    def new_stage(self, partition: int) -> Stage: ...

    @abstractmethod
    def process(
        self, owned: OwnedPartition[Stage], records: list[ConsumerRecord[bytes, bytes]],
        batches: RecordBatches,
    ) -> int:  # fmt: skip
        """Run a batch through the partition's stage and add what it makes to `batches`;
        returns the number of records counted as processed when the batch is committed."""

    def pass_time(
        self, owned: OwnedPartition[Stage], now: datetime, batches: RecordBatches
    ) -> bool:
        """The partition has nothing left to read and has read nothing for a while: move its
        event-time clock to the wall clock `now` and add what that makes to `batches`; False
        if the stage has no such clock or it did not move."""
        return False

    def holds_due(self, stage: Stage, now: datetime) -> bool:
        """Whether the stage holds events that are due by the wall clock `now`."""
        return False

    def release_due(
        self, owned: OwnedPartition[Stage], now: datetime, batches: RecordBatches
    ) -> bool:
        """The partition has nothing left to read: add what its held events due by `now` make
        to `batches`; False if there were none."""
        return False

    @abstractmethod
    def count_processed(self, records: int) -> None: ...

    @abstractmethod
    def update_gauges(self, stages: list[Stage]) -> None: ...

    def add(self, batches: RecordBatches, outputs: list[SessionizerOutput]) -> None:
        self.metrics.count(outputs)
        for output in outputs:
            batches.add(self.topics.topic_of(output), output.to_bytes(), output.partition_key)

    def add_routed(
        self, batches: RecordBatches, routed: Routed, value: bytes | None = None
    ) -> None:
        batches.add(
            self.topics.sessionizer_journeys,
            routed_value(routed) if value is None else value,
            routed.partition_key,
            headers=routed_headers(routed),
        )


class IdentityEdge(StageEdge[IdentityStage]):
    """Stage 1, reading the events topic (keyed by device)."""

    name = "identities"

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        super().__init__(settings, metrics)
        self.input_topic = self.topics.events
        self.changelog = self.topics.identities_changelog
        self.group = self.topics.identities_group
        self._journey_partitions = range(settings.topic_partitions)

    def new_stage(self, partition: int) -> IdentityStage:
        return IdentityStage(self.rules, partition)

    def process(
        self, owned: OwnedPartition[IdentityStage], records: list[ConsumerRecord[bytes, bytes]],
        batches: RecordBatches,
    ) -> int:  # fmt: skip
        stage = owned.stage
        duplicates = stage.identities.duplicates
        for record in records:
            if is_command(record.headers):
                self._command(stage, record, batches)
                continue
            try:
                event = Event.from_bytes(record.value or b"")
            except RecordError as exc:
                self.add(batches, [self._refused(record, str(exc))])
                continue
            if event.timestamp < EARLIEST_EVENT_TIME:
                self.add(batches, [self._refused(record, "an event before 1970")])
                continue
            links, routed = stage.route(event)
            self.add(batches, links)
            for one in routed:
                # the event as it was read: it decodes to the same event, without a new encoding
                self.add_routed(batches, one, record.value if one.event is event else None)
        self.metrics.duplicates.inc(stage.identities.duplicates - duplicates)
        self._add_watermarks(owned, batches)
        return len(records)

    def _command(
        self, stage: IdentityStage, record: ConsumerRecord[bytes, bytes], batches: RecordBatches
    ) -> None:
        try:
            command = EraseCommand.from_bytes(record.value or b"")
        except RecordError as exc:
            self.add(batches, [self._refused(record, f"an unreadable command: {exc}")])
            return
        self.add_routed(batches, stage.erase(command.site_id, command.id))

    def pass_time(
        self, owned: OwnedPartition[IdentityStage], now: datetime, batches: RecordBatches
    ) -> bool:
        released = self._release(owned, now, batches)  # before the watermark that follows
        marks = owned.stage.pass_time(now, self._journey_partitions)
        if released and not marks:
            self._add_watermarks(owned, batches)
        self._add_markers(marks, batches)
        return released or bool(marks)

    def holds_due(self, stage: IdentityStage, now: datetime) -> bool:
        oldest = stage.hold.oldest
        return oldest is not None and oldest + stage.hold.window <= now

    def release_due(
        self, owned: OwnedPartition[IdentityStage], now: datetime, batches: RecordBatches
    ) -> bool:
        released = self._release(owned, now, batches)
        if released:
            self._add_watermarks(owned, batches)
        return released

    def _release(
        self, owned: OwnedPartition[IdentityStage], now: datetime, batches: RecordBatches
    ) -> bool:
        if not self.holds_due(owned.stage, now):
            return False
        links, routed = owned.stage.release_due(now)
        self.add(batches, links)
        for one in routed:
            self.add_routed(batches, one)
        return True

    def _add_watermarks(self, owned: OwnedPartition[IdentityStage], batches: RecordBatches) -> None:
        """After a batch's events, in the same transaction: a journeys partition that has this
        marker has every event of this partition up to it."""
        stage = owned.stage
        marks = upstream_watermarks(owned.tp.partition, stage.newest, self._journey_partitions)
        self._add_markers(marks, batches)

    def _add_markers(self, marks: list[tuple[int, Routed]], batches: RecordBatches) -> None:
        for partition, marker in marks:
            batches.add(
                self.topics.sessionizer_journeys, b"", None, partition=partition,
                headers=routed_headers(marker),
            )  # fmt: skip

    def count_processed(self, records: int) -> None:
        self.metrics.events_processed.inc(records)

    def update_gauges(self, stages: list[IdentityStage]) -> None:
        self.metrics.state_entries.labels(self.name).set(sum(len(e.identities) for e in stages))
        clocks = [e.newest / 1e6 for e in stages if e.newest is not None]
        self.metrics.clock.labels(self.name).set(min(clocks, default=math.nan))

    def _refused(self, record: ConsumerRecord[bytes, bytes], why: str) -> DeadLetter:
        self.metrics.undecodable_events.inc()
        return DeadLetter.of(
            record.value,
            DeadLetterReason.UNDECODABLE,
            f"{self.topics.events}: {why}",
            "sessionizer",
            # the record's own time, not the clock: a replay must be identical
            received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )


class JourneyEdge(StageEdge[JourneyStage]):
    """Stage 2, reading the sessionizer's journeys topic (keyed by journey)."""

    name = "journeys"

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        super().__init__(settings, metrics)
        self.input_topic = self.topics.sessionizer_journeys
        self.changelog = self.topics.journeys_changelog
        self.group = self.topics.journeys_group
        self._events_partitions = settings.topic_partitions

    def new_stage(self, partition: int) -> JourneyStage:
        return JourneyStage(self.rules, self._events_partitions, partition)

    def process(
        self, owned: OwnedPartition[JourneyStage], records: list[ConsumerRecord[bytes, bytes]],
        batches: RecordBatches,
    ) -> int:  # fmt: skip
        stage = owned.stage
        applied = stage.applied
        for record in records:
            routed = routed_from_record(record.value or b"", record.headers)
            outputs, handoffs = stage.process(routed)
            self.add(batches, outputs)
            for handoff in handoffs:
                self.add_routed(batches, handoff)
        return stage.applied - applied

    def count_processed(self, records: int) -> None:
        self.metrics.journey_events.inc(records)

    def update_gauges(self, stages: list[JourneyStage]) -> None:
        journeys = [e.journeys for e in stages]
        self.metrics.active_journeys.set(sum(len(j) for j in journeys))
        self.metrics.open_sessions.set(sum(j.open_sessions for j in journeys))
        self.metrics.waiting_journeys.set(sum(e.waiting for e in stages))
        self.metrics.state_entries.labels(self.name).set(
            sum(len(e.journeys) + e.waiting for e in stages)
        )
        clocks = [e.watermark.timestamp() for e in stages if e.watermark is not None]
        self.metrics.clock.labels(self.name).set(min(clocks, default=math.nan))


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """State lives per input partition: restored on assignment, released on revoke.

    The consumer's coordinator runs these in its own task, at any moment of the run loop. They
    wait for the loop's `busy` section, so a revoke never comes between a poll's processing and
    the start of its transactions; then a revoke waits for every transaction started, so a
    partition (and its producer) is let go with nothing uncommitted.
    """

    def __init__(self, worker: StageWorker[Stage]) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._worker.busy:
            await self._worker.finish_commits()
            await self._worker.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._worker.busy:
            await self._worker.restore(assigned)


class StageWorker(Generic[Stage]):
    """One stage of the sessionizer: reads its input topic, writes what `edge` make of it.

    Commit order, for every polled batch of an input partition, inside one Kafka transaction of
    that partition's producer (transactional id `<group>.<partition>`):
      1. Send the records the stage made of the batch to the output topics (and, for the
         identity stage, the routed events and the partition's watermark to the journeys topic).
      2. Send the stage's state changes to the same partition of the changelog.
      3. Add the input offset after the batch to the transaction (send_offsets_to_transaction);
         none when no record was read: only the wall clock let held events go or moved an
         idle partition's clock.
      4. Commit the transaction.
    A `read_committed` reader sees all of a batch's records or none. A crash before 4 leaves an
    open transaction that the next producer with the same id aborts when it starts; the batch is
    read again from the committed offset by an stage restored from the changelog, which holds
    exactly the state after the last committed batch, so the same records come out again.
    """

    def __init__(
        self, settings: Settings, metrics: SessionizerMetrics, edge: StageEdge[Stage]
    ) -> None:
        self._settings = settings
        self._edge = edge
        self._group = edge.group
        self._metrics = metrics
        self._partitions: dict[TopicPartition, OwnedPartition[Stage]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._committing: list[asyncio.Task[None]] = []  # the previous poll's transactions
        self._failed_commit: Exception | None = None
        self._gauges_updated = 0.0
        self._last_read: dict[TopicPartition, float] = {}  # monotonic time of its last records
        # Held from a poll's processing until its transactions are in `_committing`, and by
        # the rebalance callbacks (`_Assignment`).
        self.busy = asyncio.Lock()
        self._rebalances = 0  # partitions restored or released so far

    @property
    def assigned(self) -> list[TopicPartition]:
        return sorted(self._partitions)

    async def __aenter__(self) -> StageWorker[Stage]:
        await ensure_topics(self._settings)
        consumer = new_consumer(
            self._settings,
            group_id=self._group,
            # A partition's share of a poll is one transaction: several broker round trips.
            max_poll_records=self._settings.sessionizer_max_poll_records,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.subscribe([self._edge.input_topic], listener=_Assignment(self))
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

        The partitions stay paused until then, so no record is processed by an stage that has
        not caught up with the changelog.

        Each partition then reads on from its committed offset as the broker has it once the
        producer has started. The consumer looks its committed offsets up as the assignment
        arrives, concurrently with this; a transaction the previous owner committed may then
        still be writing its markers, and the offset fetched is the one before it (Kafka
        answers such a fetch with the last stable offset unless asked for `require_stable`,
        which aiokafka does not send). Starting the producer with the same transactional id
        completes that transaction first, so the changelog read here holds its state changes,
        and the offset asked for again here is the one after its batch. Without this the batch
        would be processed a second time on top of its own state.
        """
        fresh = sorted(tp for tp in assigned if tp not in self._partitions)
        consumer = self._consumer
        if not fresh or consumer is None:  # None: stopping, and a last rebalance came first
            return
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
            stages = await self.restored_stages([tp.partition for tp in fresh])
        except BaseException:
            for producer in producers.values():
                await producer.stop()
            raise
        for tp in fresh:
            committed = await consumer.committed(tp)
            if committed is not None:
                consumer.seek(tp, committed)
            self._partitions[tp] = OwnedPartition(tp, stages[tp.partition], producers[tp])
            self._last_read[tp] = time.monotonic()
        self._rebalances += 1
        seconds = time.perf_counter() - started
        self._metrics.restore_seconds.labels(self._edge.name).observe(seconds)
        log.info(
            "restored partitions %s (%s) in %.2fs",
            [tp.partition for tp in fresh],
            self._edge.name,
            seconds,
        )
        self._update_gauges()
        consumer.resume(*fresh)

    @property
    def stages(self) -> dict[int, Stage]:
        """The stage of every partition held here, by partition."""
        return {tp.partition: owned.stage for tp, owned in self._partitions.items()}

    async def restored_stages(self, partitions: list[int]) -> dict[int, Stage]:
        """New stages of the partitions, with the state their changelog partitions hold."""
        stages = {partition: self._edge.new_stage(partition) for partition in partitions}
        changelog = [TopicPartition(self._edge.changelog, p) for p in partitions]
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
                    stage = stages[tp.partition]
                    for record in records:
                        stage.apply_change(state_change(record.key, record.value))
                for tp in list(remaining):
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await reader.stop()
        for stage in stages.values():
            stage.finish_restore()
        return stages

    async def release(self, revoked: list[TopicPartition]) -> None:
        self._rebalances += 1
        for tp in revoked:
            owned = self._partitions.pop(tp, None)
            self._last_read.pop(tp, None)
            if owned is not None:
                await owned.producer.stop()
        self._update_gauges()

    def _update_gauges(self) -> None:
        """Counting open sessions walks every journey held here, so the run loop does this
        every few seconds, not after every poll."""
        self._gauges_updated = time.monotonic()
        self._edge.update_gauges([owned.stage for owned in self._partitions.values()])

    # --- processing -----------------------------------------------------------------------------

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use `async with StageWorker(...)` before running it")
        return self._consumer

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, process, commit; one poll deep.

        The stages work through a poll's records while the previous poll's transactions are
        still committing (the broker's round trips), and that poll's transactions start only
        once the previous ones are committed: per partition, transactions stay one at a time
        and in order. A failed commit ends the run, and a restart restores every stage from
        its changelog, so work done ahead of a commit that failed is never kept.
        """
        consumer = self._require_consumer()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                rebalances = self._rebalances
                if self._failed_commit is not None:
                    # It failed while a rebalance waited for it, inside the poll.
                    raise self._failed_commit
                if time.monotonic() - self._gauges_updated >= GAUGE_INTERVAL_SECONDS:
                    self._update_gauges()
                quiet = await self._quiet_partitions(batches)
                async with self.busy:
                    if self._rebalances != rebalances:
                        # Polled before a rebalance: every partition held now was restored
                        # and reads again from its committed offset.
                        continue
                    polled = time.perf_counter()
                    prepared = [self._prepare(tp, records) for tp, records in batches.items()]
                    prepared += self._pass_time(quiet)
                    await self.finish_commits()
                    self._committing = [
                        asyncio.create_task(self._commit(*batch, polled))
                        for batch in prepared
                        if batch
                    ]
                for tp in batches:
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        lag = highwater - await consumer.position(tp)
                        self._metrics.consumer_lag.labels(self._edge.name, str(tp.partition)).set(
                            lag
                        )
            await self.finish_commits()
            self._update_gauges()
        finally:
            committing, self._committing = self._committing, []
            await asyncio.gather(*committing, return_exceptions=True)

    async def finish_commits(self) -> None:
        """Wait until the transactions started so far are committed; raise if one failed.

        A failure is also kept, so the run ends even when a rebalance listener (whose errors
        the consumer only logs) was the one waiting: going on would commit later offsets of
        that partition past the records whose outputs were never committed. The other
        transactions are waited for all the same, so none is left running unowned.
        """
        committing, self._committing = self._committing, []
        results = await asyncio.gather(*committing, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self._failed_commit = result
                raise result
            if isinstance(result, BaseException):
                raise result

    def _prepare(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> _Prepared[Stage] | None:
        """Run a partition's batch through its stage: the records to write, the offset after
        the batch and the number of records to count as processed."""
        owned = self._partitions.get(tp)
        if owned is None:
            # Fetched in the instant between assignment and pause: read it again once restored.
            self._require_consumer().seek(tp, records[0].offset)
            return None
        self._last_read[tp] = time.monotonic()
        batches = RecordBatches(owned.producer)
        processed = self._edge.process(owned, records, batches)
        self._add_changes(owned, batches)
        return owned, batches, records[-1].offset + 1, processed

    async def _quiet_partitions(
        self, polled: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> list[tuple[OwnedPartition[Stage], bool]]:
        """The partitions that read nothing this time, have nothing left to read, and either
        hold events now due or are idle: read nothing for `idle_after_seconds` (each at most
        once per that interval). Each comes with whether it is idle.

        Only the live end of a partition passes time: one still catching up is read to its end
        first, so a replay or a restart never jumps its clock past records it has not read.
        """
        idle_after = self._settings.idle_after_seconds
        consumer = self._require_consumer()
        now, wall = time.monotonic(), datetime.now(UTC)
        quiet: list[tuple[OwnedPartition[Stage], bool]] = []
        for tp, owned in list(self._partitions.items()):
            if tp in polled:
                continue
            idle = bool(idle_after) and now - self._last_read.get(tp, now) >= idle_after
            if not idle and not self._edge.holds_due(owned.stage, wall):
                continue
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                continue
            if idle:
                self._last_read[tp] = now  # the next pass, if still idle, one interval later
            quiet.append((owned, idle))
        return quiet

    def _pass_time(self, quiet: list[tuple[OwnedPartition[Stage], bool]]) -> list[_Prepared[Stage]]:
        """Let the quiet partitions (still held here) go on by the wall clock: their held
        events that are due go, and an idle one's clock moves to the wall clock, so a quiet
        shop's last visitors still drop off and their carts are still signalled, without
        waiting for new traffic."""
        prepared: list[_Prepared[Stage]] = []
        for owned, idle in quiet:
            if self._partitions.get(owned.tp) is not owned:
                continue  # released, or restored afresh, while its position was looked up
            batches = RecordBatches(owned.producer)
            now = datetime.now(UTC)
            if idle:
                moved = self._edge.pass_time(owned, now, batches)
            else:
                moved = self._edge.release_due(owned, now, batches)
            if moved:
                self._add_changes(owned, batches)
                prepared.append((owned, batches, None, 0))
        return prepared

    def _add_changes(self, owned: OwnedPartition[Stage], batches: RecordBatches) -> None:
        for change in owned.stage.take_changes():  # to this partition's changelog
            key, value = changelog_record(change)
            batches.add(self._edge.changelog, value, key, partition=owned.tp.partition)

    async def _commit(
        self,
        owned: OwnedPartition[Stage],
        batches: RecordBatches,
        next_offset: int | None,
        processed: int,
        polled: float,
    ) -> None:
        producer = owned.producer
        async with producer.transaction():
            await batches.send()  # 1. outputs and 2. state changes
            if next_offset is not None:  # None: the clock moved, no record was read
                await producer.send_offsets_to_transaction(  # 3. input offsets
                    {owned.tp: next_offset}, self._group
                )
        # 4. committed when the transaction block exits without an exception
        self._edge.count_processed(processed)
        self._metrics.batch_seconds.labels(self._edge.name).observe(time.perf_counter() - polled)


class Sessionizer:
    """Both stages in one process: `klantreis sessionizer`. Either failing stops both."""

    def __init__(self, settings: Settings, metrics: SessionizerMetrics) -> None:
        self._settings = settings
        self._metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set. When Kafka fails a stage (an outage, a broker restart under a
        transaction), both start again from the last commit; a fatal error is raised."""

        def restarted(reason: str) -> None:
            self._metrics.restarts.labels(reason).inc()

        await ride_out("sessionizer", lambda: self._run_stages(stop), stop, restarted)

    async def _run_stages(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; raises what ended a stage, after stopping the other."""
        settings, metrics = self._settings, self._metrics
        identities = StageWorker(settings, metrics, IdentityEdge(settings, metrics))
        journeys = StageWorker(settings, metrics, JourneyEdge(settings, metrics))
        async with identities, journeys:
            stages = [asyncio.create_task(identities.run(stop)),
                      asyncio.create_task(journeys.run(stop))]  # fmt: skip
            try:
                done, _ = await asyncio.wait(stages, return_when=asyncio.FIRST_EXCEPTION)
                for stage in done:
                    failure = stage.exception()
                    if failure is not None:
                        log.error("a sessionizer stage failed; stopping both", exc_info=failure)
                        raise failure
            finally:
                for stage in stages:
                    stage.cancel()
                await asyncio.gather(*stages, return_exceptions=True)
