-- The metrics worker's batch plans: the offset ranges of a batch, written before its rows, so a
-- worker that crashed between inserting a batch and committing its offsets re-forms exactly that
-- batch after a restart and inserts it under the same deduplication token (which ClickHouse then
-- drops). Without the plan, the replay would be cut at other offsets, carry another token and be
-- stored a second time.
--
-- Engine: MergeTree: plans are only appended; the worker reads its group's newest.
-- ORDER BY (group_id, planned_at): that read.
-- TTL 7 days: only the newest plan of a group is ever needed.
CREATE TABLE IF NOT EXISTS {database}.metrics_batches
(
    group_id   String,
    token      String,
    ranges     Array(Tuple(topic String, partition UInt32, first UInt64, last UInt64)),
    planned_at DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (group_id, planned_at)
TTL toDateTime(planned_at) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 1000;
