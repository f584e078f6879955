-- Drop-offs and touchpoint credit per day, kept current by materialized views on
-- phase_transitions, for the fast (`exact=false`) drop-off and touchpoint figures. Same reasoning
-- as 0007: uniqCombined(14) states of journey ids, so replays and overlapping backfills count nothing twice.

-- Journeys that dropped off in a phase on a day (the day the phase's quiet time ran out).
-- ORDER BY (site_id, day, phase): read per site and days, grouped by phase.
CREATE TABLE IF NOT EXISTS {database}.dropoffs_daily
(
    site_id  LowCardinality(String),
    day      Date,
    phase    LowCardinality(String),
    journeys AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.dropoffs_daily_mv
TO {database}.dropoffs_daily AS
SELECT site_id, toDate(at) AS day, to_phase AS phase, uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind = 'dropped_off'
GROUP BY site_id, day, phase;


-- Last-touch credit: journeys that moved to a phase (as their furthest yet) on a day, by the
-- touchpoint and channel of the event that moved them.
-- ORDER BY (site_id, day, phase, touchpoint, channel): read per site and days, grouped by all.
CREATE TABLE IF NOT EXISTS {database}.touchpoints_daily
(
    site_id    LowCardinality(String),
    day        Date,
    phase      LowCardinality(String),
    touchpoint LowCardinality(String),
    channel    LowCardinality(String),
    journeys   AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, phase, touchpoint, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.touchpoints_daily_mv
TO {database}.touchpoints_daily AS
SELECT site_id, toDate(at) AS day, to_phase AS phase, touchpoint, channel,
       uniqCombinedState(14)(journey_id) AS journeys
FROM {database}.phase_transitions
WHERE kind IN ('entered', 'advanced') AND to_phase = furthest_phase
GROUP BY site_id, day, phase, touchpoint, channel;

