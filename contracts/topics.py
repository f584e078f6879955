"""Kafka topic names: the contract between the three services.

Every name carries a schema version (`.v1`): a breaking change to a record gets a new topic, so
old and new services can run side by side during a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import KafkaRecord
from contracts.records import CATALOGUE, KIND_OF


@dataclass(frozen=True)
class Topics:
    """The topics of one klantreis installation; the prefix lets several share a broker."""

    prefix: str

    @property
    def events(self) -> str:
        """Validated, enriched events from the collector, keyed by site and visitor."""
        return f"{self.prefix}.events.v1"

    @property
    def dead_letters(self) -> str:
        """Input that could not be accepted, with a typed reason (never silently dropped)."""
        return f"{self.prefix}.dead-letters.v1"

    @property
    def sessions(self) -> str:
        """Session snapshots from the sessionizer; the newest version of a session wins."""
        return f"{self.prefix}.sessions.v1"

    @property
    def transitions(self) -> str:
        """Journey phase transitions from the sessionizer."""
        return f"{self.prefix}.transitions.v1"

    @property
    def signals(self) -> str:
        """Journey changes to act on: abandoned carts, drop-offs, returns, repeat purchases."""
        return f"{self.prefix}.signals.v1"

    @property
    def identities(self) -> str:
        """Identity links: which anonymous or former ids belong to which customer."""
        return f"{self.prefix}.identities.v1"

    @property
    def sessionizer_journeys(self) -> str:
        """Inside the sessionizer: events keyed by their journey (the customer once known), the
        hand-offs of journeys a login merged, and each events partition's progress in event time.
        From its identity stage to its journey stage."""
        return f"{self.prefix}.sessionizer-journeys.v1"

    @property
    def identities_changelog(self) -> str:
        """The identity stage's state, one partition per events partition; compacted, so it holds
        the latest state of every key and a restore reads no more than that."""
        return f"{self.prefix}.sessionizer-identities-changelog.v1"

    @property
    def journeys_changelog(self) -> str:
        """The journey stage's state, one partition per `sessionizer_journeys` partition;
        compacted."""
        return f"{self.prefix}.sessionizer-journeys-changelog.v1"

    @property
    def sites(self) -> str:
        """The installation's sites (`contracts/sites.py`), keyed by site id; compacted, with
        one partition: every collector and read API reads it whole at start and follows it."""
        return f"{self.prefix}.sites.v1"

    def configs(self) -> dict[str, dict[str, str]]:
        """Per-topic configuration for the topics that need more than the broker's defaults.

        The changelogs are compacted within a bounded time, not only when enough of them is
        stale: an erased customer's state must leave the disk, not only the live keys. A
        segment rolls after a day and is compacted within a day after that; the tombstones
        stay a day more, for restores that are reading at that moment."""
        day = str(24 * 3600 * 1000)
        bounded = {
            "cleanup.policy": "compact",
            "segment.ms": day,
            "max.compaction.lag.ms": day,
            "delete.retention.ms": day,
        }
        return {
            self.identities_changelog: bounded,
            self.journeys_changelog: bounded,
            self.sites: {"cleanup.policy": "compact"},
        }

    def partitions_of(self, topic: str, default: int) -> int:
        """A topic's partition count: the configured one, but one for the sites, which are
        few and whose readers want every update in order."""
        return 1 if topic == self.sites else default

    def internal(self) -> tuple[str, ...]:
        """The sessionizer's own topics: no records for anyone else."""
        return (self.sessionizer_journeys, self.identities_changelog, self.journeys_changelog)

    def all(self) -> tuple[str, ...]:
        return (
            self.events,
            self.dead_letters,
            self.sessions,
            self.transitions,
            self.signals,
            self.identities,
            *self.internal(),
            self.sites,
        )

    def topic_of(self, record: KafkaRecord) -> str:
        """The topic a record is written to."""
        name: str = getattr(self, KIND_OF[type(record)].topic)
        return name

    def record_types(self) -> dict[str, type[KafkaRecord]]:
        """The record each topic (all but the sessionizer's own) carries, for readers to decode
        by."""
        return {getattr(self, kind.topic): kind.record_type for kind in CATALOGUE}

    def outputs(self) -> tuple[str, ...]:
        """The topics the metrics worker writes to the warehouse."""
        kept = set(self.internal()) | {self.sites}
        return tuple(topic for topic in self.all() if topic not in kept)

    @property
    def identities_group(self) -> str:
        """The sessionizer's identity stage, reading `events`."""
        return f"{self.prefix}.sessionizer-identities"

    @property
    def journeys_group(self) -> str:
        """The sessionizer's journey stage, reading `sessionizer_journeys`."""
        return f"{self.prefix}.sessionizer-journeys"

    @property
    def metrics_group(self) -> str:
        return f"{self.prefix}.metrics"
