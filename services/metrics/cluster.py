"""The migrations' DDL for a ClickHouse cluster: Replicated tables on every shard, Distributed
tables in front of them, created `ON CLUSTER`.

The single-node DDL in `migrations/` stays the one definition; this module derives the cluster
form from it, so a column added there reaches both. Per table `<name>`:

- `<name>_local`: the same columns with the engine's Replicated variant (replicas of a shard share
  `/clickhouse/tables/{shard}/<database>/<name>_local` in Keeper);
- `<name>`: a Distributed table over `<name>_local`, so writers and queries keep using `<name>`.
  Its sharding key comes from the table's `-- shard by:` line in the DDL: rows that replace each
  other must meet on one shard, so it is a function of the replacing key (rand() without one).

Materialized views run on every shard, from the local source table into the local aggregate
table; backfills (`INSERT ... SELECT`) go through the Distributed tables once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.metrics.migrations import Migration

LOCAL_SUFFIX = "_local"

_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<table>\w+)\s*\n")
_ENGINE = re.compile(r"ENGINE = (?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?")
_SHARD_BY = re.compile(r"^--\s*shard by:\s*(?P<key>.+?)\s*$", re.MULTILINE)
_ALTER = re.compile(r"ALTER TABLE (?P<db>\w+)\.(?P<table>\w+)\b")
_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<db>\w+)\.(?P<view>\w+)\s*\n"
    r"TO (?P=db)\.(?P<target>\w+) AS"
)
_DROP = re.compile(r"DROP (?P<what>TABLE|VIEW) IF EXISTS (?P<db>\w+)\.(?P<name>\w+)$")
_REPLICATED_SETTINGS = re.compile(r"\nSETTINGS non_replicated_deduplication_window = \d+")


@dataclass(frozen=True)
class ClusterTarget:
    cluster: str
    database: str

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER '{self.cluster}'"


def create_database(target: ClusterTarget) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {target.database} {target.on_cluster}"


def schema_migrations_table(target: ClusterTarget) -> str:
    """One replicated record of applied migrations for the whole cluster (one Keeper path, no
    shard macro): migrations run once, from wherever `klantreis migrate` runs."""
    db = target.database
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations {target.on_cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
        f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{db}/schema_migrations', '{{replica}}') "
        "ORDER BY version"
    )


def cluster_statements(migration: Migration, target: ClusterTarget) -> list[str]:
    """The statements of `migration`, rewritten for the cluster."""
    statements: list[str] = []
    for statement in migration.statements(target.database):
        body = _strip_leading_comments(statement)
        if body.startswith("CREATE TABLE"):
            statements.extend(_create_table(statement, target))
        elif body.startswith("ALTER TABLE"):
            statements.extend(_alter_table(body, target))
        elif body.startswith("CREATE MATERIALIZED VIEW"):
            statements.append(_materialized_view(body, target))
        elif body.startswith("DROP "):
            statements.extend(_drop(body, target))
        elif body.startswith("INSERT INTO"):
            statements.append(body)
        else:
            raise ValueError(f"{migration.name}: no cluster form for {body.splitlines()[0]!r}")
    return statements


def _strip_leading_comments(statement: str) -> str:
    lines = statement.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def _create_table(statement: str, target: ClusterTarget) -> list[str]:
    shard_by = _SHARD_BY.search(statement)
    sharding_key = shard_by.group("key") if shard_by else "rand()"
    body = _strip_leading_comments(statement)
    name = _CREATE_TABLE.match(body)
    engine = _ENGINE.search(body)
    if name is None or engine is None:
        raise ValueError(f"cannot read the table and engine of {body.splitlines()[0]!r}")
    db, table = name.group("db"), name.group("table")
    local = f"{table}{LOCAL_SUFFIX}"
    keeper_path = f"'/clickhouse/tables/{{shard}}/{db}/{local}'"
    arguments = ", ".join(
        [keeper_path, "'{replica}'"] + ([engine.group("args")] if engine.group("args") else [])
    )
    local_body = body[: name.start()] + (
        f"CREATE TABLE IF NOT EXISTS {db}.{local} {target.on_cluster}\n" + body[name.end() :]
    )
    local_body = local_body.replace(
        engine.group(0), f"ENGINE = Replicated{engine.group('engine')}({arguments})", 1
    )
    # Replicated tables deduplicate inserts by token on their own (replicated_deduplication_window).
    local_body = _REPLICATED_SETTINGS.sub("", local_body)
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {db}.{table} {target.on_cluster} AS {db}.{local}\n"
        f"ENGINE = Distributed('{target.cluster}', {db}, {local}, {sharding_key})"
    )
    return [local_body, distributed]


def _alter_table(body: str, target: ClusterTarget) -> list[str]:
    """A column change applies to the shards' tables and to the Distributed table over them."""
    name = _ALTER.match(body)
    if name is None:
        raise ValueError(f"cannot read the table of {body.splitlines()[0]!r}")
    db, table = name.group("db"), name.group("table")
    rest = body[name.end() :]
    return [
        f"ALTER TABLE {db}.{table}{LOCAL_SUFFIX} {target.on_cluster}{rest}",
        f"ALTER TABLE {db}.{table} {target.on_cluster}{rest}",
    ]


def _drop(body: str, target: ClusterTarget) -> list[str]:
    """A view is one object per shard; a table is the Distributed one and the shards' tables."""
    drop = _DROP.match(body)
    if drop is None:
        raise ValueError(f"cannot read what {body.splitlines()[0]!r} drops")
    what, name = drop.group("what"), f"{drop.group('db')}.{drop.group('name')}"
    names = [name] if what == "VIEW" else [name, f"{name}{LOCAL_SUFFIX}"]
    return [f"DROP {what} IF EXISTS {one} {target.on_cluster} SYNC" for one in names]


def _materialized_view(body: str, target: ClusterTarget) -> str:
    """Each shard's view reads its own inserts and writes its own aggregate part."""
    view = _VIEW.match(body)
    if view is None:
        raise ValueError(f"cannot read the view of {body.splitlines()[0]!r}")
    db = view.group("db")
    rest = re.sub(rf"\bFROM {db}\.(\w+)", rf"FROM {db}.\1{LOCAL_SUFFIX}", body[view.end() :])
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view.group('view')} {target.on_cluster}\n"
        f"TO {db}.{view.group('target')}{LOCAL_SUFFIX} AS{rest}"
    )
