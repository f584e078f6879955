"""The record catalogue: every record type on a klantreis topic, its topic, its Kafka key, and
the ClickHouse table and columns the warehouse keeps it in.

This is the one list of them: `Topics` takes each record's topic from here, the warehouse writer
builds its table mappings from it (`services/metrics/rows.py`), and the unions below are what
the stages pass around. The migrations' DDL defines each column's type; an integration test
checks these columns against the migrated schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import DeadLetter, Event, KafkaRecord
from contracts.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal

# What the sessionizer writes, and every record the warehouse stores.
SessionizerOutput = SessionSnapshot | PhaseTransition | Signal | IdentityLink | DeadLetter
StoredRecord = Event | SessionizerOutput


@dataclass(frozen=True)
class RecordKind:
    """One record type's place in the pipeline.

    `topic` names the `Topics` property of its topic; `key` says what its Kafka key is (the
    record's `partition_key`); `ephemeral` are fields the table reads into EPHEMERAL columns,
    which its other columns take their DEFAULTs from."""

    record_type: type[KafkaRecord]
    topic: str
    key: str
    table: str
    columns: tuple[str, ...]
    ephemeral: tuple[str, ...] = ()

    @property
    def json_fields(self) -> tuple[str, ...]:
        """The fields of the record's JSON that its table reads, in the record's order."""
        readable = set(self.columns) | set(self.ephemeral)
        return tuple(name for name in self.record_type.__struct_fields__ if name in readable)


CATALOGUE: tuple[RecordKind, ...] = (
    RecordKind(
        Event,
        topic="events",
        key="site/visitor: one device's events in order (an alias: the id it merges away)",
        table="events",
        columns=(
            "site_id", "event_id", "type", "event", "anonymous_id", "user_id", "timestamp",
            "original_timestamp", "sent_at", "received_at", "channel", "device", "browser",
            "is_bot", "page_url", "page_path", "page_title", "referrer", "utm_source",
            "utm_medium", "utm_campaign", "utm_term", "utm_content", "user_agent", "locale",
            "library", "properties", "traits", "group_id",
        ),
        ephemeral=("context",),  # migration 0011
    ),
    RecordKind(
        SessionSnapshot,
        topic="sessions",
        key="site/journey",
        table="sessions",
        columns=(
            "site_id", "session_id", "journey_id", "anonymous_id", "user_id", "started_at",
            "last_event_at", "event_count", "page_views", "conversions", "engaged", "closed",
            "channel", "landing_path", "exit_path", "version", "journey_number",
            "session_number",
        ),
    ),
    RecordKind(
        PhaseTransition,
        topic="transitions",
        key="site/journey",
        table="phase_transitions",
        columns=(
            "site_id", "transition_id", "journey_id", "session_id", "kind", "from_phase",
            "to_phase", "furthest_phase", "at", "seconds_in_previous_phase", "event_id",
            "event_name", "channel", "device", "segment", "touchpoint", "journey_number",
        ),
    ),
    RecordKind(
        Signal,
        topic="signals",
        key="site/journey",
        table="signals",
        columns=(
            "site_id", "signal_id", "journey_id", "kind", "phase", "at", "event_id", "details",
        ),
    ),
    RecordKind(
        IdentityLink,
        topic="identities",
        key="site/customer",
        table="identities",
        columns=("site_id", "link_id", "previous_id", "customer_id", "kind", "at", "event_id"),
    ),
    RecordKind(
        DeadLetter,
        topic="dead_letters",
        key="site (empty when the site is unknown)",
        table="dead_letters",
        columns=("site_id", "reason", "stage", "message", "payload", "received_at"),
    ),
)  # fmt: skip

KIND_OF: dict[type[KafkaRecord], RecordKind] = {kind.record_type: kind for kind in CATALOGUE}
