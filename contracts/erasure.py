"""Erasure (GDPR art. 17) as a record: the command that tells the sessionizer to forget ids.

An erasure removes a customer and every id linked to them. The warehouse's rows are deleted by
the read side; the sessionizer's state is reached through the pipeline itself: an
`EraseCommand` per id goes to the events topic, keyed as that id's events are, so it reaches
the partition (and the worker) that holds the id's state, in order with its events. Its header
tells it from an event.
"""

from __future__ import annotations

from contracts.events import KafkaRecord

COMMAND_HEADER = "klantreis-command"
ERASE = b"erase"


class EraseCommand(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    """Forget `id` of `site_id`: its identity, its journey, and whatever waits for them."""

    erasure_id: str
    site_id: str
    id: str

    @property
    def partition_key(self) -> bytes:
        return f"{self.site_id}/{self.id}".encode()  # as `Event.partition_key`, for that id


def is_command(headers: object) -> bool:
    """Whether a record on the events topic is a command, not an event."""
    return isinstance(headers, list | tuple) and any(name == COMMAND_HEADER for name, _ in headers)
