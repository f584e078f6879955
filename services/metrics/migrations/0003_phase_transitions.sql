-- Journey phase transitions: each time a journey entered a phase, and what moved it.
--
-- Engine: ReplacingMergeTree: a transition's id is derived from the journey, the event and the
-- phase, so a replayed transition is the same row and collapses. The funnel reads
-- max(phase reached) per journey and counts distinct journeys, which is exact even before merges.
-- ORDER BY (site_id, journey_id, transition_id): funnels group by journey within a site; the id
-- last makes the sort key the de-duplication key.
-- PARTITION BY month of the transition: date-range funnels skip months.
-- On a cluster, a journey's transitions (and so their copies) meet on one shard:
-- shard by: sipHash64(site_id, journey_id)
CREATE TABLE IF NOT EXISTS {database}.phase_transitions
(
    site_id        LowCardinality(String),
    transition_id  String,
    journey_id     String,
    session_id     String,
    from_phase     LowCardinality(String),
    to_phase       LowCardinality(String),
    furthest_phase LowCardinality(String),
    at             DateTime64(3, 'UTC'),
    event_id       String,
    event_name     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, journey_id, transition_id)
SETTINGS non_replicated_deduplication_window = 1000;
