"""Erasure (GDPR art. 17): a customer, and every id ever linked to them, out of every table; the
daily aggregates of the days they touched computed again without them.

Which ids: the customer's, and each id that identity links tie to this customer only (a device
also linked to someone else keeps that person's rows; the rows carrying this customer's id still
go). Which rows: the raw tables' rows that carry one of those ids, and the dead letters whose
payload names one. The sessionizer's state is erased by the caller first (embedded, in
process; with Kafka, through the pipeline), so that nothing it still held describes the
customer again after the rows are gone.

The deletes are mutations (`ALTER TABLE … DELETE`, waited for): they rewrite the parts that
held the rows, so the data is gone from disk, not only hidden. The aggregates of the affected
site and days are deleted and filled again from the raw tables through each materialized view's
own query; their states are sets, so live rows arriving meanwhile cannot count twice.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, computed_field

from contracts.timecodec import to_millis
from services.metrics.cluster import LOCAL_SUFFIX
from services.metrics.warehouse import Warehouse

log = logging.getLogger(__name__)

# Per raw table: the rows that carry one of the ids (`{ids:Array(String)}`).
ROWS_OF = {
    "events": "anonymous_id IN {ids:Array(String)} OR user_id IN {ids:Array(String)}",
    "sessions": "journey_id IN {ids:Array(String)} OR anonymous_id IN {ids:Array(String)} "
    "OR user_id IN {ids:Array(String)}",
    "phase_transitions": "journey_id IN {ids:Array(String)}",
    "signals": "journey_id IN {ids:Array(String)}",
    "identities": "previous_id IN {ids:Array(String)} OR customer_id IN {ids:Array(String)}",
    # an id as a JSON string in the refused input
    "dead_letters": "multiSearchAny(payload, {quoted:Array(String)})",
}
# The times the daily aggregates are kept by, per raw table that feeds them.
DAY_OF = {"events": "timestamp", "sessions": "started_at", "phase_transitions": "at"}
MAX_LINK_DEPTH = 16  # alias chains (an address changed, then changed again) followed this far
_TARGET = re.compile(r"\bTO (?P<db>\w+)\.(?P<table>\w+)")


class ErasureStatus(BaseModel):
    """One erasure request, as `GET /api/v1/admin/erasures/{id}` and `klantreis erase` show it."""

    erasure_id: str
    site_id: str
    status: Literal["pending", "complete", "failed"]
    rows_deleted: int
    requested_at: datetime
    completed_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds(self) -> float | None:
        """How long it took, once complete."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.requested_at).total_seconds()


class Eraser(Protocol):
    async def erase(self, site_id: str, customer_key: str) -> ErasureStatus:
        """Start erasing the customer (by the id their rows carry); answers at once."""
        ...


def linked_ids(warehouse: Warehouse, site_id: str, customer_key: str) -> list[str]:
    """The customer's id and every id linked to this customer only, alias chains followed."""
    found = {customer_key}
    frontier = {customer_key}
    for _ in range(MAX_LINK_DEPTH):
        rows = warehouse.query(
            "SELECT previous_id, groupUniqArray(customer_id) FROM {database}.identities "
            "WHERE site_id = {site:String} AND previous_id IN (SELECT previous_id FROM "
            "{database}.identities WHERE site_id = {site:String} AND customer_id IN "
            "{ids:Array(String)}) GROUP BY previous_id",
            {"site": site_id, "ids": sorted(frontier)},
        )
        frontier = {
            previous
            for previous, customers in rows
            if set(customers) <= found and previous not in found
        }
        if not frontier:
            break
        found |= frontier
    return sorted(found)


def _parameters(site_id: str, ids: Sequence[str]) -> dict[str, object]:
    return {"site": site_id, "ids": list(ids), "quoted": [f'"{one}"' for one in ids]}


def affected_days(warehouse: Warehouse, site_id: str, ids: Sequence[str]) -> list[date]:
    """The days whose aggregates count one of the ids."""
    union = " UNION ALL ".join(
        f"SELECT toDate({column}) AS day FROM {{database}}.{table} "
        f"WHERE site_id = {{site:String}} AND ({ROWS_OF[table]})"
        for table, column in DAY_OF.items()
    )
    rows = warehouse.query(
        f"SELECT DISTINCT day FROM ({union}) ORDER BY day", _parameters(site_id, ids)
    )
    return [day for (day,) in rows]


def delete_rows(
    warehouse: Warehouse, site_id: str, ids: Sequence[str], stored_before: datetime
) -> int:
    """Delete the rows that carry one of the ids from every raw table, if they were stored
    before `stored_before` (later ones are a new history); the number deleted."""
    parameters = _parameters(site_id, ids) | {"before": _whole_second_after(stored_before)}
    suffix, on_cluster = _cluster_parts(warehouse)
    deleted = 0
    for table, rows in ROWS_OF.items():
        where = (
            f"site_id = {{site:String}} AND stored_at <= toDateTime({{before:Int64}}) AND ({rows})"
        )
        (count,) = warehouse.query(
            f"SELECT count() FROM {{database}}.{table} WHERE {where}", parameters
        )[0]
        if count:
            warehouse.query(
                f"ALTER TABLE {{database}}.{table}{suffix}{on_cluster} DELETE WHERE {where} "
                "SETTINGS mutations_sync = 2",
                parameters,
            )
            deleted += int(count)
    return deleted


def recompute_aggregates(warehouse: Warehouse, site_id: str, days: Sequence[date]) -> None:
    """Fill the daily aggregates of `days` again from the raw tables, through each view's own
    query (the one definition of what an aggregate holds)."""
    if not days:
        return
    suffix, on_cluster = _cluster_parts(warehouse)
    views = warehouse.query(
        "SELECT create_table_query, as_select FROM system.tables WHERE database = "
        "{db:String} AND engine = 'MaterializedView' ORDER BY name",
        {"db": warehouse.database},
    )
    parameters = {"site": site_id, "days": list(days)}
    where = "site_id = {site:String} AND day IN {days:Array(Date)}"
    for create, select in views:
        target = _TARGET.search(create)
        assert target is not None, create
        table = target["table"].removesuffix(LOCAL_SUFFIX)
        # on a cluster the views read local tables; a backfill reads them all, once
        source = select.replace(LOCAL_SUFFIX + " ", " ") if suffix else select
        warehouse.query(
            f"ALTER TABLE {{database}}.{table}{suffix}{on_cluster} DELETE WHERE {where} "
            "SETTINGS mutations_sync = 2",
            parameters,
        )
        warehouse.query(
            f"INSERT INTO {{database}}.{table} SELECT * FROM ({source}) WHERE {where}", parameters
        )


def erase_from_warehouse(
    warehouse: Warehouse, site_id: str, ids: Sequence[str], stored_before: datetime
) -> int:
    """Every row of the ids stored before `stored_before` out, the aggregates of their days
    again; the rows deleted."""
    days = affected_days(warehouse, site_id, ids)
    deleted = delete_rows(warehouse, site_id, ids, stored_before)
    recompute_aggregates(warehouse, site_id, days)
    return deleted


def _whole_second_after(moment: datetime) -> int:
    """`stored_at` has whole seconds: a row stored in the same second counts as before."""
    return int(moment.timestamp()) + 1


def _cluster_parts(warehouse: Warehouse) -> tuple[str, str]:
    if not warehouse.cluster:
        return "", ""
    return LOCAL_SUFFIX, f" ON CLUSTER '{warehouse.cluster}'"


class ErasureLog:
    """The `erasures` table: each request's state, readable from every read API."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def start(self, site_id: str, ids: Sequence[str]) -> ErasureStatus:
        status = ErasureStatus(
            erasure_id=uuid.uuid4().hex,
            site_id=site_id,
            status="pending",
            rows_deleted=0,
            requested_at=datetime.now(UTC),
            completed_at=None,
        )
        self._write(status, ids)
        return status

    def finish(
        self, status: ErasureStatus, rows_deleted: int, failed: bool = False
    ) -> ErasureStatus:
        done = status.model_copy(
            update={
                "status": "failed" if failed else "complete",
                "rows_deleted": rows_deleted,
                "completed_at": datetime.now(UTC),
            }
        )
        self._write(done, ())
        if not failed:  # the ids go with the pending row
            self._warehouse.query(
                "ALTER TABLE {database}.erasures DELETE WHERE erasure_id = {id:String} AND "
                "status = 'pending' SETTINGS mutations_sync = 2",
                {"id": status.erasure_id},
            )
        return done

    def get(self, erasure_id: str) -> ErasureStatus | None:
        found = self._read("erasure_id = {id:String}", {"id": erasure_id})
        return found[0][0] if found else None

    def pending(self) -> list[tuple[ErasureStatus, list[str]]]:
        """Erasures a stop interrupted, with their ids, to finish."""
        return self._read("status = 'pending'")

    def _read(
        self, where: str, parameters: dict[str, object] | None = None
    ) -> list[tuple[ErasureStatus, list[str]]]:
        fields = ("erasure_id", "site_id", "status", "rows_deleted", "requested_at", "completed_at")
        rows = self._warehouse.query(
            f"SELECT {', '.join(fields)}, ids FROM {{database}}.erasures FINAL WHERE {where}",
            parameters,
        )
        found = []
        for *row, ids in rows:
            values = dict(zip(fields, row, strict=True))
            for moment in ("requested_at", "completed_at"):
                if values[moment] is not None:
                    values[moment] = values[moment].replace(tzinfo=UTC)
            found.append((ErasureStatus.model_validate(values), list(ids)))
        return found

    def _write(self, status: ErasureStatus, ids: Sequence[str]) -> None:
        version = {"pending": 1, "complete": 2, "failed": 2}[status.status]
        self._warehouse.query(
            "INSERT INTO {database}.erasures (erasure_id, site_id, status, ids, rows_deleted, "
            "requested_at, completed_at, version) VALUES ({id:String}, {site:String}, "
            "{status:String}, {ids:Array(String)}, {rows:UInt64}, "
            "fromUnixTimestamp64Milli({requested:Int64}, 'UTC'), "
            "if({completed:Int64} < 0, NULL, fromUnixTimestamp64Milli({completed:Int64}, 'UTC')), "
            "{version:UInt64})",
            {
                "id": status.erasure_id,
                "site": status.site_id,
                "status": status.status,
                "ids": list(ids),
                "rows": status.rows_deleted,
                "requested": to_millis(status.requested_at),
                "completed": -1 if status.completed_at is None else to_millis(status.completed_at),
                "version": version,
            },
        )
