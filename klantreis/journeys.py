"""What the sessionizer emits: session snapshots and journey phase transitions.

Both carry deterministic ids derived from their input, so a replay after a crash produces the
same records again and the warehouse collapses them instead of counting twice.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime

from klantreis.events import KafkaRecord

# Fixed namespace: ids derived from it are stable across processes, versions and replays.
KLANTREIS_NAMESPACE = uuid.UUID("5b0c1a52-3f0e-4a57-9d0c-6b6c616e7472")


def journey_key(site_id: str, journey_id: str) -> bytes:
    """Outputs are keyed by journey, so all of one journey's records share a partition."""
    return f"{site_id}/{journey_id}".encode()


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(KLANTREIS_NAMESPACE, "\x1f".join(parts)))


class SessionSnapshot(KafkaRecord):
    """The state of one session after its newest event; `version` grows with every event."""

    schema_version: Literal[1] = 1
    session_id: str
    site_id: str
    journey_id: str
    anonymous_id: str | None
    user_id: str | None
    started_at: AwareDatetime
    last_event_at: AwareDatetime
    event_count: int
    page_views: int
    landing_url: str | None
    exit_url: str | None
    version: int

    @property
    def partition_key(self) -> bytes:
        return journey_key(self.site_id, self.journey_id)


class PhaseTransition(KafkaRecord):
    """A journey moved from one phase to another (`from_phase` is None when it began)."""

    schema_version: Literal[1] = 1
    transition_id: str
    site_id: str
    journey_id: str
    session_id: str
    from_phase: str | None
    to_phase: str
    furthest_phase: str
    at: AwareDatetime
    event_id: str
    event_name: str | None

    @property
    def partition_key(self) -> bytes:
        return journey_key(self.site_id, self.journey_id)
