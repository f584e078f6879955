"""The cluster form of the schema: Replicated tables on the shards, Distributed tables over them,
derived from the single-node migrations."""

from __future__ import annotations

import re

import pytest

from services.metrics.cluster import ClusterTarget, cluster_statements, schema_migrations_table
from services.metrics.migrations import Migration, load_migrations

TARGET = ClusterTarget("shop_cluster", "klantreis")
ALL = [s for m in load_migrations() for s in cluster_statements(m, TARGET)]


def statement(prefix: str) -> str:
    """The last statement that starts so: the schema as the migrations leave it."""
    return [s for s in ALL if s.startswith(prefix)][-1]


def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one_with_its_sharding_key() -> (
    None
):
    local = statement("CREATE TABLE IF NOT EXISTS klantreis.events_local ON CLUSTER 'shop_cluster'")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/klantreis/events_local', '{replica}')"
    ) in local
    assert "ORDER BY (site_id, toDate(timestamp), anonymous_id, event_id)" in local
    assert "non_replicated_deduplication_window" not in local
    assert statement("CREATE TABLE IF NOT EXISTS klantreis.events ON CLUSTER") == (
        "CREATE TABLE IF NOT EXISTS klantreis.events ON CLUSTER 'shop_cluster' AS "
        "klantreis.events_local\n"
        "ENGINE = Distributed('shop_cluster', klantreis, events_local, "
        "sipHash64(site_id, anonymous_id))"
    )


def test_engine_arguments_follow_the_replication_arguments() -> None:
    sessions = statement("CREATE TABLE IF NOT EXISTS klantreis.sessions_local")
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/klantreis/sessions_local', "
        "'{replica}', version)"
    ) in sessions
    aggregate = statement("CREATE TABLE IF NOT EXISTS klantreis.sessions_daily_local")
    assert "ENGINE = ReplicatedAggregatingMergeTree(" in aggregate


def test_tables_whose_rows_never_replace_each_other_shard_at_random() -> None:
    assert statement("CREATE TABLE IF NOT EXISTS klantreis.dead_letters ON").endswith(
        "dead_letters_local, rand())"
    )


def test_column_changes_reach_both_the_shards_and_the_distributed_table() -> None:
    changes = [s for s in ALL if "ADD COLUMN IF NOT EXISTS device" in s and "events" in s]
    assert [s.split(" ON CLUSTER")[0] for s in changes] == [
        "ALTER TABLE klantreis.events_local",
        "ALTER TABLE klantreis.events",
    ]


def test_views_read_and_write_the_shards_tables() -> None:
    view = statement("CREATE MATERIALIZED VIEW IF NOT EXISTS klantreis.phase_reach_daily_mv")
    assert "ON CLUSTER 'shop_cluster'\nTO klantreis.phase_reach_daily_local AS" in view
    assert "FROM klantreis.phase_transitions_local" in view


def test_every_single_node_table_exists_under_its_name_on_the_cluster() -> None:
    single = {
        match
        for m in load_migrations()
        for s in m.statements("klantreis")
        for match in re.findall(r"CREATE TABLE IF NOT EXISTS klantreis\.(\w+)", s)
    }
    created = set(
        re.findall(r"CREATE TABLE IF NOT EXISTS klantreis\.(\w+) ON CLUSTER", "\n".join(ALL))
    )
    assert created == single | {f"{table}_local" for table in single}
    assert "{replica}" in schema_migrations_table(TARGET)


def test_a_table_made_again_goes_from_the_shards_and_the_distributed_table_its_view_once() -> None:
    drops = [s for s in ALL if s.startswith("DROP") and "sessions_daily" in s]
    assert drops == [
        "DROP VIEW IF EXISTS klantreis.sessions_daily_mv ON CLUSTER 'shop_cluster' SYNC",
        "DROP TABLE IF EXISTS klantreis.sessions_daily ON CLUSTER 'shop_cluster' SYNC",
        "DROP TABLE IF EXISTS klantreis.sessions_daily_local ON CLUSTER 'shop_cluster' SYNC",
    ]
    made_again = ALL.index(drops[-1])
    assert "groupBitmap" in statement("CREATE TABLE IF NOT EXISTS klantreis.sessions_daily_local")
    assert ALL.index(statement("CREATE TABLE IF NOT EXISTS klantreis.sessions_daily_local")) > (
        made_again
    )


def test_a_statement_without_a_cluster_form_is_refused() -> None:
    with pytest.raises(ValueError, match="no cluster form"):
        cluster_statements(
            Migration(99, "0099_x.sql", "RENAME TABLE {database}.events TO {database}.e;"), TARGET
        )
