-- Erasure requests (GDPR art. 17) and their progress: what `GET /api/v1/admin/erasures/{id}`
-- answers.
--
-- Engine: ReplacingMergeTree(version): an erasure's newest row is its state (pending, then
-- complete or failed).
-- ORDER BY erasure_id: read by id.
-- `ids` (the customer's ids to erase) is kept only while the erasure is pending, so that a
-- restart can finish it; once it completes, its pending rows are deleted, and what stays holds
-- no personal data: when, which site, how many rows, how long. No TTL: the log of erasures is
-- what shows they were carried out.
-- shard by: sipHash64(erasure_id)
CREATE TABLE IF NOT EXISTS {database}.erasures
(
    erasure_id   String,
    site_id      LowCardinality(String),
    status       LowCardinality(String),
    ids          Array(String),
    rows_deleted UInt64,
    requested_at DateTime64(3, 'UTC'),
    completed_at Nullable(DateTime64(3, 'UTC')),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY erasure_id;
