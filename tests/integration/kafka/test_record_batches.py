"""`RecordBatches`, the sessionizer's way of producing: records land where `producer.send` (and
the default partitioner) puts them, in order, and a transaction that is aborted shows none of
them to a read_committed reader."""

from __future__ import annotations

import asyncio

from aiokafka.partitioner import DefaultPartitioner

from contracts.kafka import RecordBatches, ensure_topics, new_producer, read_to_end
from contracts.settings import Settings


async def test_keyed_records_land_on_the_partition_and_in_the_order_send_gives_them(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    topics = settings.topics
    keys = [f"shop/visitor-{n}".encode() for n in range(200)]
    producer = new_producer(settings, max_batch_size=16 * 1024)  # forces batches to split
    await producer.start()
    try:
        batches = RecordBatches(producer)
        for round_ in range(5):
            for key in keys:
                batches.add(topics.sessions, b"%s %d" % (key, round_) + b"." * 200, key)
        batches.add(topics.sessions, b"pinned", b"any key", partition=2)
        await asyncio.gather(*await batches.send())
        sent = {key: (await producer.send_and_wait(topics.signals, b"", key=key)).partition
                for key in keys}  # fmt: skip
        # ... and where the Java client and aiokafka's default partitioner put them
        assert sent == {key: DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]) for key in keys}
    finally:
        await producer.stop()

    records = await read_to_end(settings.require_kafka(), topics.sessions, 3)
    landed = {r.key: p for p, batch in records.items() for r in batch}
    assert {key: landed[key] for key in keys} == sent
    assert len(set(sent.values())) == 3, "200 keys spread over every partition"
    assert landed[b"any key"] == 2
    for key in keys:
        values = [r.value for batch in records.values() for r in batch if r.key == key]
        assert values == [b"%s %d" % (key, n) + b"." * 200 for n in range(5)]


async def test_records_of_an_aborted_transaction_are_never_read(settings: Settings) -> None:
    await ensure_topics(settings)
    topics = settings.topics
    producer = new_producer(settings, transactional_id=f"{settings.topic_prefix}-batches")
    await producer.start()
    try:
        batches = RecordBatches(producer)
        batches.add(topics.signals, b"aborted", b"k")
        await producer.begin_transaction()
        await batches.send()
        await producer.abort_transaction()
        batches.add(topics.signals, b"committed", b"k")
        async with producer.transaction():
            await batches.send()
    finally:
        await producer.stop()
    records = await read_to_end(settings.require_kafka(), topics.signals, 3)
    assert [r.value for batch in records.values() for r in batch] == [b"committed"]
