"""Kafka clients configured the one way klantreis uses them, and topic creation.

Producers wait for all in-sync replicas, are idempotent (a retried send never duplicates a
record) and compress their batches with zstd; consumers read only committed records and commit
offsets themselves, after their output is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    AuthenticationFailedError,
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    ProducerFenced,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedVersionError,
    kafka_errors,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord

from contracts.events import Event, KafkaRecord
from contracts.settings import Settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    """The default partitioner's hash (murmur2, as the Java client), kept per key."""
    return int(murmur2(key)) & 0x7FFFFFFF


def key_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition the default partitioner picks for `key` among `partitions` (sorted)."""
    return partitions[_key_hash(key) % len(partitions)]


class CachedKeyPartitioner:
    """aiokafka's default partitioner with each key's hash kept: murmur2 in pure Python costs
    microseconds per key, and a visitor's or journey's key comes back with each of its events."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)  # type: ignore[no-any-return]
        return key_partition(key, all_partitions)


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "acks": "all",
        "enable_idempotence": True,
        # JSON compresses about tenfold with zstd at the broker's default level (3), at twice
        # the speed of lz4 at the level aiokafka fixes for it (9), which compresses less.
        "compression_type": "zstd",
        "linger_ms": 5,
        # Room for a few thousand events per partition batch: with the default 16 KB a send
        # waits for the previous batch to drain every few dozen events.
        "max_batch_size": 1024 * 1024,
        "request_timeout_ms": 10_000,
        "client_id": f"{settings.topic_prefix}-producer",
        "partitioner": CachedKeyPartitioner(),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def new_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "group_id": group_id,
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 2000,
        "client_id": f"{group_id}-consumer",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(settings: Settings) -> None:
    """Create klantreis's topics with explicit partition counts; existing ones are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_kafka())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topics = settings.topics
        configs = topics.configs()
        missing = [
            NewTopic(
                name,
                num_partitions=topics.partitions_of(name, settings.topic_partitions),
                replication_factor=settings.topic_replication_factor,
                topic_configs=configs.get(name, {}),
            )
            for name in topics.all()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.debug("another process created the topics first")
            log.info("created topics %s", [topic.name for topic in missing])
    finally:
        await admin.close()


Headers = Sequence[tuple[str, bytes]]
_Pending = tuple[bytes | None, bytes | None, int | None, Headers]


class RecordBatches:
    """Records collected into one Kafka batch per topic-partition, then handed over at once.

    `AIOKafkaProducer.send` costs a metadata check, a partitioner call, a future and a queue
    insert per record, which at the sessionizer's rate is most of its CPU. A batch built here
    costs one append (in C) per record and one future per partition. A keyed record without an
    explicit partition goes where the default partitioner would put it, so readers see no
    difference. Inside a transaction, `send` adds every partition to it as `send` would.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        # per topic: (key, value, partition or None for the key's partition)
        self._pending: defaultdict[str, list[_Pending]] = defaultdict(list)

    def add(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int | None = None,
        headers: Headers = (),
    ) -> None:
        if key is None and partition is None:
            raise ValueError("a record needs a key or an explicit partition")
        self._pending[topic].append((key, value, partition, headers))

    async def send(self) -> list[asyncio.Future[Any]]:
        """Queue every batch with the producer; the futures resolve when the broker has them."""
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        pending, self._pending = self._pending, defaultdict(list)
        for topic, records in pending.items():
            partitions = sorted(await producer.partitions_for(topic))
            builders: dict[int, BatchBuilder] = {}
            for key, value, partition, headers in records:
                if partition is None:
                    assert key is not None
                    partition = key_partition(key, partitions)
                builder = builders.get(partition)
                if builder is None:
                    builder = builders[partition] = producer.create_batch()
                record = {"timestamp": None, "key": key, "value": value, "headers": list(headers)}
                if builder.append(**record) is None:
                    # full: hand this one over and start the next
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = builders[partition] = producer.create_batch()
                    if builder.append(**record) is None:
                        raise ValueError(f"a record for {topic} is larger than a whole batch")
            for partition, builder in sorted(builders.items()):
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures


async def read_to_end(
    bootstrap_servers: str, topic: str, partitions: int
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """Every committed record of a topic, per partition, up to the end offsets of now.

    For tools, tests and benchmarks that inspect what the pipeline wrote; transaction markers
    take offsets too, so "done" is each partition's position reaching its end offset.
    """
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_poll_records=10_000,
    )
    await reader.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        reader.assign(assigned)
        await reader.seek_to_beginning(*assigned)
        ends = await reader.end_offsets(assigned)
        records: dict[int, list[ConsumerRecord[bytes, bytes]]] = {p: [] for p in range(partitions)}
        remaining = {tp for tp in assigned if ends[tp] > 0}
        while remaining:
            for tp, batch in (await reader.getmany(*remaining, timeout_ms=1000)).items():
                records[tp.partition].extend(batch)
            remaining = {tp for tp in remaining if await reader.position(tp) < ends[tp]}
        return records
    finally:
        await reader.stop()


async def write_records(settings: Settings, records: Sequence[KafkaRecord]) -> None:
    """Produce records, each to its topic with its key, as the services that own those topics
    do (same keys, same partitions): input for tests and benchmarks."""
    await ensure_topics(settings)
    topics = settings.topics
    producer = new_producer(settings)
    await producer.start()
    try:
        batches = RecordBatches(producer)
        for record in records:
            batches.add(topics.topic_of(record), record.to_bytes(), key=record.partition_key)
        await asyncio.gather(*await batches.send())
    finally:
        await producer.stop()


async def write_events(settings: Settings, events: Sequence[Event]) -> None:
    """Produce events to the events topic as the collector does."""
    await write_records(settings, events)


# Errors no fresh start of the clients can mend: another instance took over (fenced), or the
# broker refuses who we are or what we ask. They end the process with their reason.
FATAL_KAFKA_ERRORS: tuple[type[KafkaError], ...] = (
    ProducerFenced,
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedVersionError,
)


class ProducerFencedResponse(BrokerResponseError, ProducerFenced):  # type: ignore[misc]  # aiokafka is untyped
    """Kafka's PRODUCER_FENCED (code 90, KIP-588): what brokers answer a fenced producer's
    EndTxn with. aiokafka's table stops at code 79, so without this entry a fenced commit
    arrives as UnknownError, which reads as a passing fault instead of another instance
    having taken the partition over."""

    errno = 90
    message = "PRODUCER_FENCED"
    description = "There is a newer producer with the same transactional id."


kafka_errors.setdefault(ProducerFencedResponse.errno, ProducerFencedResponse)
FIRST_RESTART_DELAY = 1.0
LONGEST_RESTART_DELAY = 10.0


def outlived_by(failure: BaseException) -> bool:
    """True when the clients may work again after a fresh start: the broker was away, or
    restarted under a transaction or a commit in flight."""
    if isinstance(failure, FATAL_KAFKA_ERRORS):
        return False
    return isinstance(failure, KafkaError | OSError | asyncio.TimeoutError)


async def ride_out(
    name: str,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    restarted: Callable[[str], None] = lambda reason: None,
) -> None:
    """Run `run` (which starts its clients, works until `stop`, and stops them in `finally`)
    again each time Kafka fails it, waiting 1 s, then twice as long after each failure within
    a minute of the last, up to 10 s; a fatal error or any other exception is raised.

    A fresh start is the recovery a crash takes: every consumer reads again from its group's
    committed offsets, and state and unfinished batches are restored from what was committed,
    so the exactly-once guarantees hold across it.
    """
    delay = FIRST_RESTART_DELAY
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run()
            return
        except Exception as failure:
            if not outlived_by(failure):
                raise
            if time.monotonic() - started > 60:
                delay = FIRST_RESTART_DELAY
            reason = type(failure).__name__
            log.warning(
                "%s lost Kafka (%s: %s); starting again from the last commit in %.0fs",
                name, reason, failure, delay,
            )  # fmt: skip
            restarted(reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(LONGEST_RESTART_DELAY, delay * 2)
