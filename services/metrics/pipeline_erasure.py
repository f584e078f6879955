"""Erasure with Kafka: the sessionizer's state through the pipeline, then the warehouse.

The read API cannot reach the sessionizer's state; the state's owners can, in order with the
events that built it. So an erasure:

1. finds the customer's ids in the warehouse and records the erasure as pending (with them, so
   a restart finishes it);
2. sends an `EraseCommand` per id to the events topic, keyed as that id's events: the identity
   stage forgets the id (a tombstone on its changelog) and passes the command on to the journey
   stage, which forgets the journey and whatever waits for it (tombstones too);
3. waits until the identity stage has committed past every command, then until the journey
   stage has committed everything the journeys topic held at that moment, then until the
   metrics worker has written everything its topics held after that: no output that still
   describes the customer can reach the warehouse later;
4. deletes the rows stored until then and recomputes the affected aggregates;
5. records the erasure as complete.

"Everything a topic held" is each partition's last committed record, found by reading back
from its end as the groups read (`read_committed`): transaction markers and aborted records take
offsets too, and a group that read only committed data does not commit past them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from contracts.erasure import COMMAND_HEADER, ERASE, EraseCommand
from contracts.kafka import new_producer
from contracts.settings import Settings
from services.metrics.erasure import (
    ErasureLog,
    ErasureStatus,
    erase_from_warehouse,
    linked_ids,
)
from services.metrics.warehouse import Warehouse

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class PipelineEraser:
    """Erasures through the Kafka pipeline; entry resumes those a stop interrupted, exit stops
    the running ones (they resume on the next start) and the Kafka clients."""

    def __init__(self, settings: Settings, warehouse: Warehouse) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._warehouse = warehouse
        self._log = ErasureLog(warehouse)
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        bootstrap = self._settings.require_kafka()
        self._producer = new_producer(self._settings, client_id="klantreis-erasure")
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await self._producer.start()
            await self._offsets.start()
            await self._admin.start()
            for status, ids in await asyncio.to_thread(self._log.pending):
                self._spawn(status, ids)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        try:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
        finally:
            try:
                if self._admin is not None:
                    await self._admin.close()
            finally:
                try:
                    if self._offsets is not None:
                        await self._offsets.stop()
                finally:
                    if self._producer is not None:
                        await self._producer.stop()

    async def erase(self, site_id: str, customer_key: str) -> ErasureStatus:
        ids = await asyncio.to_thread(linked_ids, self._warehouse, site_id, customer_key)
        status = await asyncio.to_thread(self._log.start, site_id, ids)
        self._spawn(status, ids)
        return status

    def _spawn(self, status: ErasureStatus, ids: list[str]) -> None:
        task = asyncio.create_task(
            self._carry_out(status, ids), name=f"erasure-{status.erasure_id}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _carry_out(self, status: ErasureStatus, ids: list[str]) -> None:
        try:
            sent = await self._send_commands(status, ids)
            await self._until_committed(self._topics.identities_group, sent)
            log.debug("erasure %s: identities done", status.erasure_id)
            await self._until_drained(
                self._topics.journeys_group, [self._topics.sessionizer_journeys]
            )
            log.debug("erasure %s: journeys done", status.erasure_id)
            await self._until_drained(self._topics.metrics_group, self._topics.outputs())
            log.debug("erasure %s: warehouse writes done", status.erasure_id)
            before = datetime.now(UTC)
            deleted = await asyncio.to_thread(
                erase_from_warehouse, self._warehouse, status.site_id, ids, before
            )
            await asyncio.to_thread(self._log.finish, status, deleted)
            log.info("erasure %s complete: %d rows", status.erasure_id, deleted)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("erasure %s failed; it resumes on the next start", status.erasure_id)

    async def _send_commands(
        self, status: ErasureStatus, ids: list[str]
    ) -> dict[TopicPartition, int]:
        """Step 2; per events partition, the offset just past its last command."""
        assert self._producer is not None
        sent: dict[TopicPartition, int] = {}
        for one in ids:
            command = EraseCommand(erasure_id=status.erasure_id, site_id=status.site_id, id=one)
            meta = await self._producer.send_and_wait(
                self._topics.events,
                command.to_bytes(),
                key=command.partition_key,
                headers=[(COMMAND_HEADER, ERASE)],
            )
            tp = TopicPartition(meta.topic, meta.partition)
            sent[tp] = max(sent.get(tp, 0), meta.offset + 1)
        return sent

    async def _until_committed(self, group: str, targets: dict[TopicPartition, int]) -> None:
        while True:
            committed = await self._committed(group)
            behind = {
                tp: (committed.get(tp, 0), offset)
                for tp, offset in targets.items()
                if committed.get(tp, 0) < offset
            }
            if not behind:
                return
            log.debug("erasure waits for %s: %s", group, behind)
            await asyncio.sleep(POLL_SECONDS)

    async def _until_drained(self, group: str, topics: Iterable[str]) -> None:
        """Until `group` has committed what `topics` held now (see the module's last note)."""
        assert self._offsets is not None
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in range(self._settings.topic_partitions)
        ]
        ends = await self._offsets.end_offsets(partitions)
        await self._until_committed(group, await self._past_last_committed(ends))

    async def _past_last_committed(
        self, ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Per partition, the offset just past its last committed record before its end (none
        for a partition without one): all partitions read back at once, in a window from the
        end that grows where it held no committed record."""
        assert self._offsets is not None
        consumer = self._offsets
        pending = {tp: end for tp, end in ends.items() if end > 0}
        targets: dict[TopicPartition, int] = {}
        window = 64
        while pending:
            consumer.assign(list(pending))
            starts = await consumer.beginning_offsets(list(pending))
            for tp, end in pending.items():
                consumer.seek(tp, max(starts[tp], end - window))
            last: dict[TopicPartition, int] = {}
            while unread := [
                tp for tp, end in pending.items() if await consumer.position(tp) < end
            ]:
                for tp, records in (await consumer.getmany(*unread, timeout_ms=500)).items():
                    offsets = [r.offset for r in records if r.offset < pending[tp]]
                    if offsets:
                        last[tp] = max(last.get(tp, -1), *offsets)
            for tp, offset in last.items():
                targets[tp] = offset + 1
            pending = {
                tp: end
                for tp, end in pending.items()
                if tp not in last and end - window > starts[tp]
            }
            window *= 16
        return targets

    async def _committed(self, group: str) -> dict[TopicPartition, int]:
        assert self._admin is not None
        try:
            offsets = await self._admin.list_consumer_group_offsets(group)
        except KafkaError as exc:  # the group has no coordinator yet: nothing committed
            log.debug("no offsets of %s yet: %s", group, exc)
            return {}
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
