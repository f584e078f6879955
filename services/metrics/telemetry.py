"""The warehouse writer's Prometheus metrics, in one typed container on an explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WarehouseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "klantreis_warehouse_worker_restarts_total",
            "Fresh starts of the worker from the last commit after Kafka failed it, by error.",
            ["reason"],
            registry=registry,
        )
        self.records_consumed = Counter(
            "klantreis_warehouse_records_consumed_total",
            "Topic records taken into a batch, by topic (a re-formed batch counts again).",
            ["topic"],
            registry=registry,
        )
        self.rows_written = Counter(
            "klantreis_warehouse_rows_written_total",
            "Rows inserted into ClickHouse, by table.",
            ["table"],
            registry=registry,
        )
        self.insert_seconds = Histogram(
            "klantreis_warehouse_insert_seconds",
            "Duration of one batched insert.",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.batch_rows = Histogram(
            "klantreis_warehouse_batch_rows",
            "Rows per insert.",
            buckets=(1, 10, 100, 500, 1000, 5000, 10000, 50000),
            registry=registry,
        )
        self.failed_inserts = Counter(
            "klantreis_warehouse_failed_inserts_total",
            "Inserts that raised; the batch is retried with the same deduplication token.",
            ["table"],
            registry=registry,
        )
        self.undecodable_records = Counter(
            "klantreis_warehouse_undecodable_records_total",
            "Topic records that could not be decoded, by topic; kept as dead letters.",
            ["topic"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "klantreis_warehouse_consumer_lag",
            "Records of a partition not yet consumed (high watermark minus position).",
            ["topic", "partition"],
            registry=registry,
        )
