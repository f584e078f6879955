"""Parameterised warehouse queries: the read API and the CLI ask these, never ad-hoc SQL."""

from __future__ import annotations

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
