"""The test site, and what the pipeline wrote to Kafka."""

from __future__ import annotations

import msgspec
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from contracts.events import Event
from contracts.kafka import read_to_end
from contracts.settings import Settings

WRITE_KEY = "wk_test"
SITE = "shop"
ADMIN_TOKEN = "adm-9f3c2a7e5b1d4c8a6e0f2b4d"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def read_events(settings: Settings) -> list[Event]:
    """Every event the collector has written to Kafka so far."""
    records = await read_to_end(
        str(settings.kafka_bootstrap_servers),
        settings.topics.events,
        settings.topic_partitions,
    )
    return [Event.from_bytes(r.value or b"") for batch in records.values() for r in batch]


async def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets a consumer group has committed, per topic and partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return {}  # the group does not exist until the first member joins
    finally:
        await admin.close()
    return {
        (tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset > 0
    }


async def committed(settings: Settings, group: str) -> int:
    """Records a consumer group has committed as processed, summed over its partitions."""
    return sum((await committed_offsets(settings, group)).values())


def comparable(event: Event) -> dict[str, object]:
    """What a sender decides about an event (not when the server received it, nor its id)."""
    fields = ("type", "event", "anonymous_id", "user_id", "properties", "traits", "channel")
    return {field: getattr(event, field) for field in fields} | {
        "page": msgspec.structs.asdict(event.context.page)
    }
