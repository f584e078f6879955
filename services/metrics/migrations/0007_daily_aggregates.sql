-- Daily aggregates kept current by materialized views, for dashboards that break figures down by
-- day, channel and device over weeks without scanning raw rows.
--
-- Every aggregate is a distinct-count state of ids (journey, session, event, person), never a
-- sum: merging a set with itself changes nothing, so a batch written twice (a replay under a new
-- offset range after a rebalance) or a backfill that overlaps the view cannot count anything
-- twice. uniqCombined(14) and not uniqExact or uniq: its state is a plain set while small (exact
-- counts for small shops and tests) and a HyperLogLog of 2^14 cells (~12 KiB) beyond, within
-- about 1 %; merging a month of such states takes milliseconds at tens of millions of events,
-- where uniqExact's and uniq's states (up to 64k hashes each) take hundreds. The raw queries
-- stay exact.
-- Figures here count journeys as they were recorded; the raw queries (phase_funnel and
-- friends) additionally fold an anonymous journey into the customer who later claimed it.
-- When a view is created, the migration runner also fills its table from the rows already in
-- the source (services/metrics/migrations/__init__.py, Migration.statements).
-- On a cluster each shard's view fills its shard's aggregate table and queries merge the states
-- across shards, so these need no sharding key of their own.

-- The device of the event that moved a journey, for breakdowns of the funnel by device.
ALTER TABLE {database}.phase_transitions
    ADD COLUMN IF NOT EXISTS device LowCardinality(String) AFTER channel;

-- Journeys that got to a phase (as their furthest) on a day. A funnel over a date range merges,
-- per phase, the states of that phase and every later one: a journey that got to purchase also
-- reached awareness.
-- Engine: AggregatingMergeTree, merging the states of equal keys.
-- ORDER BY (site_id, day, phase): every query filters by site and days, then groups by phase.
-- The breakdowns by channel and device live in tables of their own below, so the plain funnel
-- merges one state per day and phase, not one per channel and device as well.
CREATE TABLE IF NOT EXISTS {database}.phase_reach_daily
(
    site_id  LowCardinality(String),
    day      Date,
    phase    LowCardinality(String),
    journeys AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase);

-- A drop-off is not progress: it fires on a timer, not on something the customer did.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.phase_reach_daily_mv
TO {database}.phase_reach_daily AS
SELECT site_id, toDate(at) AS day, furthest_phase AS phase, uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind != 'dropped_off'
GROUP BY site_id, day, phase;


-- The same by the channel of the event that moved the journey (the visit's channel when the
-- event has none of its own). ORDER BY (site_id, day, phase, channel).
CREATE TABLE IF NOT EXISTS {database}.phase_reach_channel_daily
(
    site_id  LowCardinality(String),
    day      Date,
    phase    LowCardinality(String),
    channel  LowCardinality(String),
    journeys AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.phase_reach_channel_daily_mv
TO {database}.phase_reach_channel_daily AS
SELECT site_id, toDate(at) AS day, furthest_phase AS phase, channel,
       uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind != 'dropped_off'
GROUP BY site_id, day, phase, channel;


-- The same by the device of the event that moved the journey. ORDER BY (site_id, day, phase,
-- device).
CREATE TABLE IF NOT EXISTS {database}.phase_reach_device_daily
(
    site_id  LowCardinality(String),
    day      Date,
    phase    LowCardinality(String),
    device   LowCardinality(String),
    journeys AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase, device);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.phase_reach_device_daily_mv
TO {database}.phase_reach_device_daily AS
SELECT site_id, toDate(at) AS day, furthest_phase AS phase, device,
       uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind != 'dropped_off'
GROUP BY site_id, day, phase, device;


-- Sessions by the day they started and their channel (a session's channel is its first
-- event's, fixed for its life). engaged and converting only ever turn true in later snapshots,
-- so "any snapshot says so" is the session's final answer.
-- ORDER BY (site_id, day, channel): trends per day and the channel breakdown.
CREATE TABLE IF NOT EXISTS {database}.sessions_daily
(
    site_id              LowCardinality(String),
    day                  Date,
    channel              LowCardinality(String),
    sessions             AggregateFunction(uniqCombined(14), String),
    engaged_sessions     AggregateFunction(uniqCombined(14), String),
    converting_sessions  AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sessions_daily_mv
TO {database}.sessions_daily AS
SELECT site_id, toDate(started_at) AS day, channel,
       uniqCombinedState(14)(session_id) AS sessions,
       uniqCombinedStateIf(14)(session_id, engaged) AS engaged_sessions,
       uniqCombinedStateIf(14)(session_id, conversions > 0) AS converting_sessions
FROM {database}.sessions
GROUP BY site_id, day, channel;


-- Events and the people behind them per day, device and what happened (`page`, or a track
-- event's name): page views, orders or sign-ups per device without reading raw events. No
-- channel here: an event's own channel is mostly `internal`; the visit's channel lives in
-- sessions_daily and phase_reach_daily. Bots are left out, as every dashboard figure leaves
-- them out.
-- ORDER BY (site_id, day, action, device): read per site and days, filtered by action.
CREATE TABLE IF NOT EXISTS {database}.activity_daily
(
    site_id LowCardinality(String),
    day     Date,
    action  LowCardinality(String),
    device  LowCardinality(String),
    events  AggregateFunction(uniqCombined(14), String),
    people  AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, action, device);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.activity_daily_mv
TO {database}.activity_daily AS
SELECT site_id, toDate(timestamp) AS day, if(type = 'track', event, type) AS action, device,
       uniqCombinedState(14)(event_id) AS events,
       uniqCombinedState(14)(if(user_id != '', user_id, anonymous_id)) AS people
FROM {database}.events
WHERE type IN ('page', 'track') AND NOT is_bot
GROUP BY site_id, day, action, device;

