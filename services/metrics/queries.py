"""Parameterised warehouse queries: the read API and the CLI ask these, never ad-hoc SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from klantreis.phases import PhaseModel
from services.metrics.funnel import PhaseReach, phase_reach
from services.metrics.warehouse import Warehouse

# An id's history belongs to the customer whose link first claimed it (a login or an alias; a
# relink moves only later events). Journeys recorded under such an id count as that customer's.
_CUSTOMER_OF = """
    SELECT previous_id, argMin(customer_id, at) AS customer_id
    FROM {database}.identities
    WHERE site_id = {site:String} AND kind IN ('linked', 'aliased')
    GROUP BY previous_id
"""

# max() of the furthest phase per journey and a count of distinct journeys are both insensitive
# to a transition stored twice, so this is exact before ReplacingMergeTree has merged.
_FURTHEST_PHASE_SQL = f"""
SELECT furthest, count() AS journeys
FROM (
    SELECT
        if(claimed.customer_id = '', t.journey_id, claimed.customer_id) AS journey,
        max(indexOf({{phases:Array(String)}}, t.furthest_phase)) AS furthest
    FROM {{database}}.phase_transitions AS t
    LEFT JOIN ({_CUSTOMER_OF}) AS claimed ON t.journey_id = claimed.previous_id
    WHERE t.site_id = {{site:String}}
    GROUP BY journey
)
GROUP BY furthest
"""


def phase_funnel(warehouse: Warehouse, site_id: str, model: PhaseModel) -> list[PhaseReach]:
    rows = warehouse.query(_FURTHEST_PHASE_SQL, {"site": site_id, "phases": list(model.phases)})
    return phase_reach(model.phases, {int(position): int(count) for position, count in rows})


@dataclass(frozen=True)
class TimelineStep:
    at: datetime
    kind: str
    from_phase: str | None
    to_phase: str
    channel: str | None
    touchpoint: str | None
    event_name: str | None
    recorded_as: str


@dataclass(frozen=True)
class CustomerJourney:
    customer_id: str
    identities: list[str]
    steps: list[TimelineStep]

    @property
    def first_touch(self) -> TimelineStep | None:
        """Where the journey began: its earliest entry (of any of the customer's ids)."""
        entries = [step for step in self.steps if step.kind == "entered"]
        return entries[0] if entries else (self.steps[0] if self.steps else None)


# The ids whose history is the customer's: their own, and every id a login or alias of theirs
# claimed (the first claiming link of an id decides, as in the funnel).
_CLAIMED_IDS_SQL = f"""
SELECT previous_id FROM ({_CUSTOMER_OF}) WHERE customer_id = {{customer:String}}
"""

# At equal times a journey's entry comes first: it happened with the event that began it.
_TIMELINE_SQL = """
SELECT at, kind, from_phase, to_phase, channel, touchpoint, event_name, journey_id
FROM {database}.phase_transitions FINAL
WHERE site_id = {site:String} AND journey_id IN {ids:Array(String)}
ORDER BY at, kind != 'entered', transition_id
"""


def customer_journey(warehouse: Warehouse, site_id: str, customer_id: str) -> CustomerJourney:
    claimed = warehouse.query(_CLAIMED_IDS_SQL, {"site": site_id, "customer": customer_id})
    ids = [customer_id, *sorted(previous for (previous,) in claimed)]
    rows = warehouse.query(_TIMELINE_SQL, {"site": site_id, "ids": ids})
    steps = [
        TimelineStep(
            at=at.replace(tzinfo=UTC) if at.tzinfo is None else at,
            kind=kind,
            from_phase=from_phase or None,
            to_phase=to_phase,
            channel=channel or None,
            touchpoint=touchpoint or None,
            event_name=event_name or None,
            recorded_as=journey_id,
        )
        for at, kind, from_phase, to_phase, channel, touchpoint, event_name, journey_id in rows
    ]
    return CustomerJourney(customer_id, ids, steps)
