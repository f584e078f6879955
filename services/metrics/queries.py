"""Parameterised warehouse queries: the read API and the CLI ask these, never ad-hoc SQL."""

from __future__ import annotations

from klantreis.phases import PhaseModel
from services.metrics.funnel import PhaseReach, phase_reach
from services.metrics.warehouse import Warehouse

# max() of the furthest phase per journey and a count of distinct journeys are both insensitive
# to a transition stored twice, so this is exact before ReplacingMergeTree has merged.
_FURTHEST_PHASE_SQL = """
SELECT furthest, count() AS journeys
FROM (
    SELECT journey_id, max(indexOf({phases:Array(String)}, furthest_phase)) AS furthest
    FROM {database}.phase_transitions
    WHERE site_id = {site:String}
    GROUP BY journey_id
)
GROUP BY furthest
"""


def phase_funnel(warehouse: Warehouse, site_id: str, model: PhaseModel) -> list[PhaseReach]:
    rows = warehouse.query(_FURTHEST_PHASE_SQL, {"site": site_id, "phases": list(model.phases)})
    return phase_reach(model.phases, {int(position): int(count) for position, count in rows})
