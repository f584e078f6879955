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


@dataclass(frozen=True)
class PhaseDropoff:
    phase: str
    reached: int
    dropped: int

    @property
    def rate(self) -> float:
        return self.dropped / self.reached if self.reached else 0.0


# A journey counts as dropped off in a phase when the newest thing that happened to it is a
# drop-off there; one that came back (a later transition) no longer does.
_DROPPED_SQL = f"""
SELECT phase, count() AS journeys
FROM (
    SELECT
        if(claimed.customer_id = '', t.journey_id, claimed.customer_id) AS journey,
        argMax(t.kind, (t.at, t.kind = 'dropped_off')) AS last_kind,
        argMax(t.to_phase, (t.at, t.kind = 'dropped_off')) AS phase
    FROM {{database}}.phase_transitions AS t
    LEFT JOIN ({_CUSTOMER_OF}) AS claimed ON t.journey_id = claimed.previous_id
    WHERE t.site_id = {{site:String}}
    GROUP BY journey
)
WHERE last_kind = 'dropped_off'
GROUP BY phase
"""


def dropoff(warehouse: Warehouse, site_id: str, model: PhaseModel) -> list[PhaseDropoff]:
    reached = {r.phase: r.journeys for r in phase_funnel(warehouse, site_id, model)}
    dropped = dict(warehouse.query(_DROPPED_SQL, {"site": site_id}))
    return [
        PhaseDropoff(phase, reached.get(phase, 0), int(dropped.get(phase, 0)))
        for phase in model.phases
    ]


@dataclass(frozen=True)
class ShopMetrics:
    sessions: int
    converting_sessions: int
    engaged_sessions: int
    carts_abandoned: int
    buyers: int
    repeat_buyers: int

    @property
    def conversion_rate(self) -> float:
        """Sessions with an order, of all sessions."""
        return self.converting_sessions / self.sessions if self.sessions else 0.0

    @property
    def bounce_rate(self) -> float:
        """Sessions that were not engaged (GA4: under 10 s, one page view, no conversion)."""
        return 1 - self.engaged_sessions / self.sessions if self.sessions else 0.0

    @property
    def cart_abandonment_rate(self) -> float:
        """Carts abandoned, of carts that ended: abandoned or ordered."""
        ended = self.carts_abandoned + self.converting_sessions
        return self.carts_abandoned / ended if ended else 0.0

    @property
    def repeat_purchase_rate(self) -> float:
        """Customers who ordered more than once, of customers who ordered."""
        return self.repeat_buyers / self.buyers if self.buyers else 0.0


# argMax by version reads each session's newest snapshot without FINAL, exact before merges.
_SESSIONS_SQL = """
SELECT count(), countIf(conversions > 0), countIf(engaged)
FROM (
    SELECT session_id, argMax(conversions, version) AS conversions,
           argMax(engaged, version) AS engaged
    FROM {database}.sessions
    WHERE site_id = {site:String}
    GROUP BY session_id
)
"""
_BUYERS_SQL = f"""
SELECT countIf(orders >= 1), countIf(orders >= 2)
FROM (
    SELECT if(e.user_id != '', e.user_id,
              if(claimed.customer_id = '', e.anonymous_id, claimed.customer_id)) AS customer,
           uniqExact(e.event_id) AS orders
    FROM {{database}}.events AS e
    LEFT JOIN ({_CUSTOMER_OF}) AS claimed ON e.anonymous_id = claimed.previous_id
    WHERE e.site_id = {{site:String}} AND e.type = 'track' AND e.event IN {{orders:Array(String)}}
    GROUP BY customer
)
"""
_ABANDONED_SQL = """
SELECT uniqExact(signal_id) FROM {database}.signals
WHERE site_id = {site:String} AND kind = 'cart_abandoned'
"""


def shop_metrics(warehouse: Warehouse, site_id: str, model: PhaseModel) -> ShopMetrics:
    sessions, converting, engaged = warehouse.query(_SESSIONS_SQL, {"site": site_id})[0]
    buyers, repeat = warehouse.query(
        _BUYERS_SQL, {"site": site_id, "orders": sorted(model.order_events)}
    )[0]
    (abandoned,) = warehouse.query(_ABANDONED_SQL, {"site": site_id})[0]
    return ShopMetrics(
        sessions=int(sessions),
        converting_sessions=int(converting),
        engaged_sessions=int(engaged),
        carts_abandoned=int(abandoned),
        buyers=int(buyers),
        repeat_buyers=int(repeat),
    )
