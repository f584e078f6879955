-- Raw enriched events: the record of what happened, for drill-down and re-computation.
--
-- Engine: ReplacingMergeTree, so a record written twice (a replayed Kafka batch whose insert
-- token was not remembered, or a client retry with the same event_id) collapses on merge.
-- ORDER BY (site_id, toDate(timestamp), anonymous_id, event_id): every dashboard query filters by
-- site and a date range first; one visitor's events of a day are adjacent for journey views; the
-- event_id last makes the sort key the de-duplication key.
-- PARTITION BY month: a date-range query skips whole months, and retention drops a month at once
-- (daily partitions would multiply parts for small shops).
-- non_replicated_deduplication_window: remembers recent insert tokens, so the metrics worker's
-- retry of the same offset range is dropped at insert time, not only at merge time.
-- On a cluster, copies of an event (same visitor) meet on one shard, as does a visitor's day:
-- shard by: sipHash64(site_id, anonymous_id)
CREATE TABLE IF NOT EXISTS {database}.events
(
    site_id            LowCardinality(String),
    event_id           String,
    type               LowCardinality(String),
    event              LowCardinality(String),
    anonymous_id       String,
    user_id            String,
    timestamp          DateTime64(3, 'UTC'),
    original_timestamp Nullable(DateTime64(3, 'UTC')),
    sent_at            Nullable(DateTime64(3, 'UTC')),
    received_at        DateTime64(3, 'UTC'),
    page_url           String,
    page_path          String,
    page_title         String,
    referrer           String,
    utm_source         LowCardinality(String),
    utm_medium         LowCardinality(String),
    utm_campaign       String,
    utm_term           String,
    utm_content        String,
    user_agent         String CODEC(ZSTD(3)),
    locale             LowCardinality(String),
    library            LowCardinality(String),
    properties         String CODEC(ZSTD(3)),
    traits             String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (site_id, toDate(timestamp), anonymous_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
