-- Segments: whether a journey moved in its first session (`new`) or a later one (`returning`),
-- the split every shop's funnel is read by, on each transition and in a daily aggregate.
ALTER TABLE {database}.phase_transitions
    ADD COLUMN IF NOT EXISTS segment LowCardinality(String) AFTER device;

-- The phase funnel by segment, as phase_reach_channel_daily is by channel (0007 says why the
-- engine and states). ORDER BY (site_id, day, phase, segment).
CREATE TABLE IF NOT EXISTS {database}.phase_reach_segment_daily
(
    site_id  LowCardinality(String),
    day      Date,
    phase    LowCardinality(String),
    segment  LowCardinality(String),
    journeys AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase, segment);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.phase_reach_segment_daily_mv
TO {database}.phase_reach_segment_daily AS
SELECT site_id, toDate(at) AS day, furthest_phase AS phase, segment,
       uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind != 'dropped_off'
GROUP BY site_id, day, phase, segment;

