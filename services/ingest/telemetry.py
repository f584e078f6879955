"""The collector's Prometheus metrics, in one typed container on an explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "klantreis_ingest_requests_total",
            "HTTP requests to the collector by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.events_accepted = Counter(
            "klantreis_ingest_events_accepted_total",
            "Events acknowledged to the client, by site.",
            ["site"],
            registry=registry,
        )
        self.events_rejected = Counter(
            "klantreis_ingest_events_rejected_total",
            "Events refused, by site and reason.",
            ["site", "reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "klantreis_ingest_rate_limited_requests_total",
            "Requests answered 429 because their site sent more than its rate, by site (the "
            "limit per client address shows as status 429 in the requests' series).",
            ["site"],
            registry=registry,
        )
        self.events_ignored = Counter(
            "klantreis_ingest_events_ignored_total",
            "Events not stored because the site's privacy settings said so (Do Not Track, no "
            "consent), by site.",
            ["site"],
            registry=registry,
        )
        self.bots_flagged = Counter(
            "klantreis_ingest_bots_flagged_total",
            "Accepted events from bots and headless browsers (kept, flagged is_bot), by site.",
            ["site"],
            registry=registry,
        )
        self.request_bytes = Counter(
            "klantreis_ingest_request_bytes_total",
            "Request body bytes read.",
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "klantreis_ingest_publish_seconds",
            "Time from handing a request's events to the sink until it acknowledged them.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.in_flight = Gauge(
            "klantreis_ingest_requests_in_flight",
            "Requests being handled.",
            registry=registry,
        )
