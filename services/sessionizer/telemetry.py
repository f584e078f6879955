"""The sessionizer's Prometheus metrics, in one typed container on an explicit registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.events import DeadLetter, DeadLetterReason
from contracts.journeys import PhaseTransition, Signal


class SessionizerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        self.restarts = Counter(
            "klantreis_sessionizer_restarts_total",
            "Fresh starts of both stages from the last commit after Kafka failed them, by error.",
            ["reason"],
            registry=registry,
        )
        self.events_processed = Counter(
            "klantreis_sessionizer_events_processed_total",
            "Events read from the events topic and routed to their journeys (duplicates and "
            "refused records included).",
            registry=registry,
        )
        self.journey_events = Counter(
            "klantreis_sessionizer_journey_events_total",
            "Events applied to their journeys: sessions, phases and timers.",
            registry=registry,
        )
        self.waiting_journeys = Gauge(
            "klantreis_sessionizer_waiting_journeys",
            "Journeys whose events wait for the hand-off of a journey a login merged into them.",
            registry=registry,
        )
        self.transitions = Counter(
            "klantreis_sessionizer_transitions_total",
            "Phase transitions emitted, by kind and the phase entered.",
            ["kind", "to_phase"],
            registry=registry,
        )
        self.signals = Counter(
            "klantreis_sessionizer_signals_total",
            "Signals emitted, by kind.",
            ["kind"],
            registry=registry,
        )
        self.duplicates = Counter(
            "klantreis_sessionizer_duplicate_events_total",
            "Events dropped because their event_id was seen recently for the same device.",
            registry=registry,
        )
        self.late_events = Counter(
            "klantreis_sessionizer_late_events_total",
            "Events older than their journey's newest by more than the allowed lateness.",
            registry=registry,
        )
        self.open_sessions = Gauge(
            "klantreis_sessionizer_open_sessions",
            "Sessions not yet closed, held by this instance.",
            registry=registry,
        )
        self.state_entries = Gauge(
            "klantreis_sessionizer_state_entries",
            "Entries held in memory by this instance: identities (stage `identities`), journeys "
            "and hand-offs waiting for their journey (stage `journeys`).",
            ["stage"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "klantreis_sessionizer_consumer_lag",
            "Records on a stage's input partition not yet processed (stage `identities` reads "
            "the events topic, stage `journeys` the sessionizer's journeys topic).",
            ["stage", "partition"],
            registry=registry,
        )
        self.clock = Gauge(
            "klantreis_sessionizer_clock_timestamp_seconds",
            "The slowest partition's event-time clock held here, as a Unix time: for stage "
            "`identities` the newest event time read (or the wall clock an idle partition moved "
            "to), for stage `journeys` the watermark that fires session ends, drop-offs and "
            "abandoned carts. Far behind the wall clock: those timers are held back. NaN while "
            "no partition here has a clock yet.",
            ["stage"],
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "klantreis_sessionizer_restore_seconds",
            "Time to restore a partition's state from its changelog on assignment.",
            ["stage"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.undecodable_events = Counter(
            "klantreis_sessionizer_undecodable_events_total",
            "Records on the events topic that are no valid event (undecodable, or before 1970); "
            "sent to the dead-letter topic.",
            registry=registry,
        )
        self.active_journeys = Gauge(
            "klantreis_sessionizer_active_journeys",
            "Journeys held in memory by this instance.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "klantreis_sessionizer_batch_seconds",
            "From a polled batch to its outputs acknowledged and offsets committed.",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )

    def count(self, outputs: Iterable[object]) -> None:
        """Count what the engine made of an event, wherever the engine runs.

        The labelled children are kept: `labels()` takes a lock and builds a key on every
        call, and this runs for every output of every event."""
        for output in outputs:
            if isinstance(output, PhaseTransition):
                self._child(self.transitions, output.kind.value, output.to_phase).inc()
            elif isinstance(output, Signal):
                self._child(self.signals, output.kind.value).inc()
            elif isinstance(output, DeadLetter) and output.reason is DeadLetterReason.LATE_EVENT:
                self.late_events.inc()

    def _child(self, counter: Counter, *labels: str) -> Counter:
        child = self._children.get((counter, labels))
        if child is None:
            child = self._children[(counter, labels)] = counter.labels(*labels)
        return child
