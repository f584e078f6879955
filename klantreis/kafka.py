"""Kafka clients configured the one way klantreis uses them, and topic creation.

Producers wait for all in-sync replicas, are idempotent (a retried send never duplicates a
record) and compress their batches with lz4; consumers read only committed records and commit
offsets themselves, after their output is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from klantreis.config import Settings
from klantreis.events import Event, KafkaRecord
from klantreis.topics import Topics

log = logging.getLogger(__name__)


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",  # JSON compresses several-fold; lz4 costs the least CPU
        "linger_ms": 5,
        # Room for a few thousand events per partition batch: with the default 16 KB a send
        # waits for the previous batch to drain every few dozen events.
        "max_batch_size": 1024 * 1024,
        "request_timeout_ms": 10_000,
        "client_id": f"{settings.topic_prefix}-producer",
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
        topics = Topics.from_settings(settings)
        configs = topics.configs()
        missing = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
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
    topics = Topics.from_settings(settings)
    producer = new_producer(settings)
    await producer.start()
    try:
        for record in records:
            await producer.send(
                topics.topic_of(record), record.to_bytes(), key=record.partition_key
            )
        await producer.flush()
    finally:
        await producer.stop()


async def write_events(settings: Settings, events: Sequence[Event]) -> None:
    """Produce events to the events topic as the collector does."""
    await write_records(settings, events)
