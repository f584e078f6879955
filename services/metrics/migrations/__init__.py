"""The warehouse schema: numbered DDL files in this folder, applied in order, and their loader.

The SQL files are the schema's one source of truth; `services/metrics/cluster.py` derives the
cluster form from the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        """The migration's statements for `database`. A materialized view only sees rows
        inserted after it exists, so each `CREATE MATERIALIZED VIEW ... TO <target> AS <select>`
        is followed by `INSERT INTO <target> <select>`, filling the target from what is already
        there; the view's SELECT stays written once. Views whose states are sets (all of them)
        make the overlap of the two harmless."""
        text = self.sql.replace("{database}", database)
        statements = []
        for part in text.split(";\n"):
            if not _strip_comments(part).strip():
                continue
            statements.append(part.strip())
            view = _MATERIALIZED_VIEW.search(_strip_comments(part))
            if view:
                statements.append(f"INSERT INTO {view.group('target')}\n{view.group('select')}")
        return statements


# `TO <target> AS <select>` of a materialized view that writes to a table of its own.
_MATERIALIZED_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS \S+\s+TO (?P<target>\S+) AS\s+(?P<select>.+)",
    re.DOTALL,
)


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def load_migrations() -> list[Migration]:
    """The numbered DDL files in this folder, in order: the schema's one source of truth."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001.. without gaps, found {versions}")
    return found
