-- Sessions as the sessionizer last described them.
--
-- Engine: ReplacingMergeTree(version): the sessionizer emits a snapshot per event with a growing
-- version, and the newest snapshot of a session is the session. Queries that need exact figures
-- before merges take argMax(..., version) per session_id.
-- ORDER BY (site_id, session_id): the replacing key must be the session's identity; site first
-- because every query filters by site.
-- PARTITION BY month of the session start: a session's start never changes, so all versions of a
-- session share a partition and can replace each other (replacement works within a partition).
-- On a cluster, all versions of a session meet on one shard:
-- shard by: sipHash64(site_id, session_id)
CREATE TABLE IF NOT EXISTS {database}.sessions
(
    site_id       LowCardinality(String),
    session_id    String,
    journey_id    String,
    anonymous_id  String,
    user_id       String,
    started_at    DateTime64(3, 'UTC'),
    last_event_at DateTime64(3, 'UTC'),
    event_count   UInt32,
    page_views    UInt32,
    landing_url   String,
    exit_url      String,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (site_id, session_id)
SETTINGS non_replicated_deduplication_window = 1000;
