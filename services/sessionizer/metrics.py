"""The sessionizer's Prometheus metrics, in one typed container on an explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SessionizerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_processed = Counter(
            "klantreis_sessionizer_events_processed_total",
            "Events turned into sessions and transitions.",
            registry=registry,
        )
        self.transitions = Counter(
            "klantreis_sessionizer_transitions_total",
            "Phase transitions emitted, by the phase entered.",
            ["to_phase"],
            registry=registry,
        )
        self.undecodable_events = Counter(
            "klantreis_sessionizer_undecodable_events_total",
            "Records on the events topic that were not events; sent to the dead-letter topic.",
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
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
