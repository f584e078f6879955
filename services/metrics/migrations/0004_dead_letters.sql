-- Refused input with its reason, so a shop can see what its tracking gets wrong.
--
-- Engine: MergeTree: dead letters have no identity to replace on; insert tokens drop replays.
-- ORDER BY (site_id, received_at): read per site, newest first.
-- TTL: a dead letter is for debugging a tracking setup, not for analysis; the one below is
-- replaced at start by the retention the settings ask for (30 days by default), counted from
-- `stored_at` (0012).
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    site_id     LowCardinality(String),
    reason      LowCardinality(String),
    stage       LowCardinality(String),
    message     String,
    payload     String CODEC(ZSTD(3)),
    received_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (site_id, received_at)
TTL toDateTime(received_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;
