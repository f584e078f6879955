-- Journeys v2: the channel of each event, engaged and closed sessions, transition kinds with the
-- touchpoint and channel that moved a journey, signals, and identity links.

ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS channel LowCardinality(String) AFTER received_at;

-- Paths, not URLs: the sessionizer keeps them in its state per visitor, where bytes count.
ALTER TABLE {database}.sessions RENAME COLUMN IF EXISTS landing_url TO landing_path;

ALTER TABLE {database}.sessions RENAME COLUMN IF EXISTS exit_url TO exit_path;

ALTER TABLE {database}.sessions
    ADD COLUMN IF NOT EXISTS conversions UInt32 AFTER page_views,
    ADD COLUMN IF NOT EXISTS engaged Bool AFTER conversions,
    ADD COLUMN IF NOT EXISTS closed Bool AFTER engaged,
    ADD COLUMN IF NOT EXISTS channel LowCardinality(String) AFTER closed;

ALTER TABLE {database}.phase_transitions
    ADD COLUMN IF NOT EXISTS kind LowCardinality(String) AFTER session_id,
    ADD COLUMN IF NOT EXISTS seconds_in_previous_phase Nullable(Float64) AFTER at,
    ADD COLUMN IF NOT EXISTS channel LowCardinality(String) AFTER event_name,
    ADD COLUMN IF NOT EXISTS touchpoint LowCardinality(String) AFTER channel;

-- Signals: journey changes to act on (abandoned cart, drop-off, return, repeat purchase).
--
-- Engine: ReplacingMergeTree: a signal's id derives from its journey, kind, phase and time, so a
-- replayed signal is the same row.
-- ORDER BY (site_id, kind, toDate(at), signal_id): read per site and kind over a date range
-- ("abandoned carts this week"); the id last makes the sort key the de-duplication key.
-- PARTITION BY month. The TTL below is replaced at start by the retention the settings ask
-- for, counted from `stored_at` (0012).
-- shard by: sipHash64(site_id, journey_id)
CREATE TABLE IF NOT EXISTS {database}.signals
(
    site_id    LowCardinality(String),
    signal_id  String,
    journey_id String,
    kind       LowCardinality(String),
    phase      LowCardinality(String),
    at         DateTime64(3, 'UTC'),
    event_id   String,
    details    String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, kind, toDate(at), signal_id)
TTL toDateTime(at) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Identity links: previous_id (an anonymous or former id) belongs to customer_id from `at` on.
--
-- Engine: ReplacingMergeTree on the link's derived id: replays collapse.
-- ORDER BY (site_id, previous_id, link_id): queries resolve a journey id to its customer by
-- previous_id; the first linked/aliased link of an id is the one that claimed its history.
-- Not partitioned by time: links are few and every query needs all of them.
-- shard by: sipHash64(site_id, previous_id)
CREATE TABLE IF NOT EXISTS {database}.identities
(
    site_id     LowCardinality(String),
    link_id     String,
    previous_id String,
    customer_id String,
    kind        LowCardinality(String),
    at          DateTime64(3, 'UTC'),
    event_id    String
)
ENGINE = ReplacingMergeTree
ORDER BY (site_id, previous_id, link_id)
SETTINGS non_replicated_deduplication_window = 1000;
