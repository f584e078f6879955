"""Parameterised warehouse queries: the read API and the CLI ask these, never ad-hoc SQL."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import computed_field

from contracts.journeys import journey_number
from contracts.phases import PhaseModel
from contracts.timecodec import to_millis
from services.metrics.filters import NO_FILTERS, SEGMENT_KEY, Filters, visit_values
from services.metrics.funnel import (
    FunnelOrder,
    FunnelStep,
    PhaseReach,
    StepReach,
    check_steps,
    from_previous,
    phase_reach,
    reach_of,
    step_reach,
)
from services.metrics.warehouse import Warehouse


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days, `first` to `last` inclusive, as a half-open interval of instants."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"date_to {self.last} is before date_from {self.first}")

    @classmethod
    def last_days(cls, days: int, today: date | None = None) -> DateRange:
        end = today or datetime.now(UTC).date()
        return cls(end - timedelta(days=days - 1), end)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


# Far enough on for any event; DateTime64(3) ends in 2299.
_END_OF_TIME_MS = 9_999_999_999_999


def _range(days: DateRange | None) -> dict[str, int]:
    """The {since_ms} / {until_ms} parameters of a query: `days`, or all time."""
    if days is None:
        return {"since_ms": 0, "until_ms": _END_OF_TIME_MS}
    return {"since_ms": to_millis(days.since), "until_ms": to_millis(days.until)}


def _in_range(column: str) -> str:
    return (
        f"{column} >= fromUnixTimestamp64Milli({{since_ms:Int64}}) "
        f"AND {column} < fromUnixTimestamp64Milli({{until_ms:Int64}})"
    )


_FILTERED = re.compile(r"\{(transitions|events|sessions|signals)_filtered(?::(\w+))?\}")


def _ask(
    warehouse: Warehouse, sql: str, parameters: dict[str, Any], filters: Filters
) -> list[tuple[Any, ...]]:
    """Run `sql` with each `{rows_filtered:alias}` mark replaced by the condition that keeps the
    rows of the visits `filters` select (services/metrics/filters.py says which those are)."""

    def condition(mark: re.Match[str]) -> str:
        rows, alias = mark.group(1), mark.group(2)
        if rows == "sessions":
            return filters.on_sessions()
        on = {
            "transitions": filters.on_transitions,
            "events": filters.on_events,
            "signals": filters.on_signals,
        }[rows]
        return on(alias)

    return warehouse.query(_FILTERED.sub(condition, sql), parameters | filters.parameters)


# An id's history belongs to the customer whose link first claimed it (a login or an alias; a
# relink moves only later events). Journeys recorded under such an id count as that customer's.
_CUSTOMER_OF = """
    SELECT previous_id, argMin(customer_id, at) AS customer_id
    FROM {database}.identities
    WHERE site_id = {site:String} AND kind IN ('linked', 'aliased')
    GROUP BY previous_id
"""


def _claimed(own_id: str) -> str:
    """`claimed.customer_id`: the customer who claimed the id in column `own_id` ('' when none
    did); the join that lets a customer's anonymous history count as theirs."""
    return f"LEFT JOIN ({_CUSTOMER_OF}) AS claimed ON {own_id} = claimed.previous_id"


def _person(own_id: str) -> str:
    """Whose a row recorded under `own_id` is: the customer who claimed that id, else the id."""
    return f"if(claimed.customer_id = '', {own_id}, claimed.customer_id)"


# max() of the furthest phase per journey and a count of distinct journeys are both insensitive
# to a transition stored twice, so this is exact before ReplacingMergeTree has merged.
_FURTHEST_PHASE_SQL = f"""
SELECT furthest, count() AS journeys
FROM (
    SELECT
        {_person("t.journey_id")} AS journey,
        max(indexOf({{phases:Array(String)}}, t.furthest_phase)) AS furthest
    FROM {{database}}.phase_transitions AS t
    {_claimed("t.journey_id")}
    WHERE t.site_id = {{site:String}} AND {_in_range("t.at")} AND {{transitions_filtered:t}}
    GROUP BY journey
)
GROUP BY furthest
"""


def phase_funnel(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange | None = None,
    filters: Filters = NO_FILTERS,
) -> list[PhaseReach]:
    """Journeys active in `days` (all time without), by the furthest phase they had reached;
    a customer and the anonymous history they claimed count once."""
    rows = _ask(
        warehouse,
        _FURTHEST_PHASE_SQL,
        {"site": site_id, "phases": list(model.phases)} | _range(days),
        filters,
    )
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
    after_touchpoints: dict[str, int]  # the last touchpoint that moved each dropped journey

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        return self.dropped / self.reached if self.reached else 0.0


# A journey counts as dropped off in a phase when the newest thing that happened to it is a
# drop-off there; one that came back (a later transition) no longer does. The touchpoint is the
# one that last moved it (a drop-off itself has none).
_DROPPED_SQL = f"""
SELECT phase, touchpoint, count() AS journeys
FROM (
    SELECT
        {_person("t.journey_id")} AS journey,
        argMax(t.kind, (t.at, t.kind = 'dropped_off')) AS last_kind,
        argMax(t.to_phase, (t.at, t.kind = 'dropped_off')) AS phase,
        argMaxIf(t.touchpoint, t.at, t.kind != 'dropped_off') AS touchpoint
    FROM {{database}}.phase_transitions AS t
    {_claimed("t.journey_id")}
    WHERE t.site_id = {{site:String}} AND {_in_range("t.at")} AND {{transitions_filtered:t}}
    GROUP BY journey
)
WHERE last_kind = 'dropped_off'
GROUP BY phase, touchpoint
"""


def dropoff(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange | None = None,
    filters: Filters = NO_FILTERS,
) -> list[PhaseDropoff]:
    """Per phase: journeys active in `days` that reached it, and those whose last word in
    `days` was dropping off there, by the touchpoint that had brought them there."""
    reached = {r.phase: r.journeys for r in phase_funnel(warehouse, site_id, model, days, filters)}
    after: dict[str, dict[str, int]] = {phase: {} for phase in model.phases}
    for phase, touchpoint, journeys in _ask(
        warehouse, _DROPPED_SQL, {"site": site_id} | _range(days), filters
    ):
        if phase in after:
            after[phase][touchpoint or "unknown"] = int(journeys)
    return [
        PhaseDropoff(phase, reached.get(phase, 0), sum(after[phase].values()), after[phase])
        for phase in model.phases
    ]


# Survey events (docs/event-api.md): NPS asks "how likely are you to recommend us" (0-10),
# CSAT "how satisfied are you" (1-5); the answer is the `score` property.
NPS_EVENT = "NPS Submitted"
CSAT_EVENT = "CSAT Submitted"
# E-mail events as the Segment e-mail spec names them; `email_id` tells e-mails apart.
EMAIL_DELIVERED_EVENT = "Email Delivered"
EMAIL_OPENED_EVENT = "Email Opened"
EXIT_PAGES_SHOWN = 10
# A refund (Segment e-commerce spec): `order_id`, and the amount refunded (all of it without).
REFUND_EVENT = "Order Refunded"


@dataclass(frozen=True)
class ExitPage:
    path: str
    exits: int
    page_views: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_rate(self) -> float:
        """Of the views of this page, those that ended a session."""
        return self.exits / self.page_views if self.page_views else 0.0


@dataclass(frozen=True)
class ShopMetrics:
    """The shop's figures over a date range (all time when both dates are None), as the read
    API serves them. A rate whose denominator is zero is None: no data is not the same as 0 %."""

    site: str
    date_from: date | None
    date_to: date | None
    sessions: int
    converting_sessions: int
    engaged_sessions: int
    carts_abandoned: int
    buyers: int
    repeat_buyers: int
    orders: int  # distinct `order_id`s placed in the range
    revenue: float  # of those orders, net of their refunds
    refunded: float  # what their refunds took back
    average_seconds_on_page: float | None
    nps_answers: int
    nps_promoters: int
    nps_detractors: int
    csat_answers: int
    csat_satisfied: int
    emails_delivered: int
    emails_opened: int
    exit_pages: list[ExitPage]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        """Sessions with an order, of all sessions."""
        return _share(self.converting_sessions, self.sessions)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bounce_rate(self) -> float | None:
        """Sessions that were not engaged (GA4: under 10 s, one page view, no conversion)."""
        engaged = _share(self.engaged_sessions, self.sessions)
        return None if engaged is None else 1 - engaged

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cart_abandonment_rate(self) -> float | None:
        """Carts abandoned, of carts that ended: abandoned or ordered."""
        return _share(self.carts_abandoned, self.carts_abandoned + self.converting_sessions)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def repeat_purchase_rate(self) -> float | None:
        """Customers who ordered more than once, of customers who ordered."""
        return _share(self.repeat_buyers, self.buyers)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def customer_lifetime_value(self) -> float | None:
        """Revenue per customer who ordered (historic CLV over the range)."""
        return self.revenue / self.buyers if self.buyers else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def average_order_value(self) -> float | None:
        return self.revenue / self.orders if self.orders else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_promoter_score(self) -> float | None:
        """% promoters (9-10) minus % detractors (0-6), from -100 to 100."""
        if not self.nps_answers:
            return None
        return 100 * (self.nps_promoters - self.nps_detractors) / self.nps_answers

    @computed_field  # type: ignore[prop-decorator]
    @property
    def customer_satisfaction(self) -> float | None:
        """CSAT: answers of 4 or 5 out of 5, of all answers."""
        return _share(self.csat_satisfied, self.csat_answers)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def email_open_rate(self) -> float | None:
        """E-mails opened at least once, of e-mails delivered."""
        return _share(self.emails_opened, self.emails_delivered)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# argMax by version reads each session's newest snapshot without FINAL, exact before merges.
_SESSIONS_SQL = f"""
SELECT count(), countIf(conversions > 0), countIf(engaged)
FROM (
    SELECT session_id, argMax(conversions, version) AS conversions,
           argMax(engaged, version) AS engaged
    FROM {{database}}.sessions
    WHERE site_id = {{site:String}} AND {_in_range("started_at")} AND {{sessions_filtered}}
    GROUP BY session_id
)
"""
# Bitmaps of session numbers per day a session began (migration 0015): a session's snapshots
# only ever become engaged or converting, so the union over them is what its newest one says.
_SESSIONS_FROM_AGGREGATES_SQL = """
SELECT groupBitmapMerge(sessions), groupBitmapMerge(engaged_sessions),
       groupBitmapMerge(converting_sessions)
FROM {database}.sessions_daily
WHERE site_id = {site:String}
  AND day >= toDate32(fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC'))
  AND day < toDate32(fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC'))
"""
# An amount: Segment's `revenue`, else its `total`, else a generic `value` (NULL without any).
_AMOUNT = """multiIf(
    JSONHas(e.properties, 'revenue'), JSONExtractFloat(e.properties, 'revenue'),
    JSONHas(e.properties, 'total'), JSONExtractFloat(e.properties, 'total'),
    JSONHas(e.properties, 'value'), JSONExtractFloat(e.properties, 'value'),
    NULL)"""
# An order is its `order_id` (Segment spec), whatever event ids carried it: a shop that sends the
# same order from the browser and from its server, or re-sends it under a new event id, has one
# order. Without an `order_id` the event is the order.
_ORDER_KEY = (
    "if(JSONExtractString(e.properties, 'order_id') != '', "
    "JSONExtractString(e.properties, 'order_id'), concat('event:', e.event_id))"
)
# The orders placed in the range, each counted once with its first copy's customer and amount,
# net of its refunds (`Order Refunded` with the same `order_id`, whenever they came; one without
# an amount refunds the whole order, and no order is refunded below zero).
_BUYERS_SQL = f"""
SELECT countIf(orders >= 1), countIf(orders >= 2), sum(orders), sum(revenue), sum(refunded)
FROM (
    SELECT o.customer AS customer, count() AS orders,
           sum(o.amount - least(o.amount, r.refunded)) AS revenue,
           sum(least(o.amount, r.refunded)) AS refunded
    FROM (
        SELECT {_ORDER_KEY} AS order_key,
               argMin(if(e.user_id != '', e.user_id, {_person("e.anonymous_id")}),
                      (e.timestamp, e.event_id)) AS customer,
               argMin(ifNull({_AMOUNT}, 0), (e.timestamp, e.event_id)) AS amount
        FROM {{database}}.events AS e
        {_claimed("e.anonymous_id")}
        WHERE e.site_id = {{site:String}} AND e.type = 'track'
          AND e.event IN {{orders:Array(String)}} AND {_in_range("e.timestamp")}
          AND {{events_filtered:e}}
        GROUP BY order_key
    ) AS o
    LEFT JOIN (
        SELECT order_key, if(countIf(amount IS NULL) > 0, inf, sum(ifNull(amount, 0))) AS refunded
        FROM (
            SELECT JSONExtractString(e.properties, 'order_id') AS order_key,
                   any({_AMOUNT}) AS amount
            FROM {{database}}.events AS e
            WHERE e.site_id = {{site:String}} AND e.type = 'track'
              AND e.event = {{refund:String}} AND JSONExtractString(e.properties, 'order_id') != ''
            GROUP BY order_key, e.event_id
        )
        GROUP BY order_key
    ) AS r ON o.order_key = r.order_key
    GROUP BY customer
)
"""
_ABANDONED_SQL = f"""
SELECT uniqExact(g.signal_id) FROM {{database}}.signals AS g
WHERE g.site_id = {{site:String}} AND g.kind = 'cart_abandoned' AND {_in_range("g.at")}
  AND {{signals_filtered:g}}
"""
# Time on a page: until the next page view or action of the same journey (the visitor, or the
# customer with every id they logged in from, whichever ids each event carries), within the
# session timeout; the last page of a visit has no next event and is left out (as GA does).
_TIME_ON_PAGE_SQL = f"""
SELECT avgIf((next_ms - at_ms) / 1000, type = 'page' AND next_ms > at_ms
             AND next_ms - at_ms <= {{timeout_ms:Int64}})
FROM (
    SELECT e.type AS type, e.event_id AS event_id, toUnixTimestamp64Milli(e.timestamp) AS at_ms,
           leadInFrame(toUnixTimestamp64Milli(e.timestamp), 1, toInt64(0)) OVER (
               PARTITION BY {_person("e.own_id")} ORDER BY e.timestamp, e.event_id
               ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ms
    FROM (SELECT *, if(user_id != '', user_id, anonymous_id) AS own_id
          FROM {{database}}.events
          WHERE site_id = {{site:String}} AND type IN ('page', 'track') AND NOT is_bot
            AND {_in_range("timestamp")}) AS e
    {_claimed("e.own_id")}
) AS e
WHERE {{events_filtered:e}}
"""
_SURVEYS_SQL = f"""
SELECT countIf(event = {{nps:String}} AND score BETWEEN 0 AND 10),
       countIf(event = {{nps:String}} AND score BETWEEN 9 AND 10),
       countIf(event = {{nps:String}} AND score BETWEEN 0 AND 6),
       countIf(event = {{csat:String}} AND score BETWEEN 1 AND 5),
       countIf(event = {{csat:String}} AND score BETWEEN 4 AND 5)
FROM (
    SELECT e.event AS event, JSONExtractFloat(e.properties, 'score') AS score
    FROM {{database}}.events AS e
    WHERE e.site_id = {{site:String}} AND e.type = 'track'
      AND e.event IN ({{nps:String}}, {{csat:String}}) AND JSONHas(e.properties, 'score')
      AND {_in_range("e.timestamp")} AND {{events_filtered:e}}
)
"""
# An e-mail without an `email_id` counts once per event: its opens cannot be told apart.
_EMAILS_SQL = f"""
SELECT uniqExactIf(email, event = {{delivered:String}}),
       uniqExactIf(email, event = {{opened:String}})
FROM (
    SELECT e.event AS event, if(JSONExtractString(e.properties, 'email_id') != '',
                     JSONExtractString(e.properties, 'email_id'), e.event_id) AS email
    FROM {{database}}.events AS e
    WHERE e.site_id = {{site:String}} AND e.type = 'track'
      AND e.event IN ({{delivered:String}}, {{opened:String}}) AND {_in_range("e.timestamp")}
      AND {{events_filtered:e}}
)
"""
_EXIT_PAGES_SQL = f"""
SELECT exits.path, exits.exits, views.views
FROM (
    SELECT exit_path AS path, count() AS exits
    FROM (
        SELECT session_id, argMax(exit_path, version) AS exit_path
        FROM {{database}}.sessions
        WHERE site_id = {{site:String}} AND {_in_range("started_at")} AND {{sessions_filtered}}
        GROUP BY session_id
    )
    WHERE exit_path != ''
    GROUP BY path
    ORDER BY exits DESC, path
    LIMIT {EXIT_PAGES_SHOWN}
) AS exits
LEFT JOIN (
    SELECT e.page_path AS path, uniqExact(e.event_id) AS views
    FROM {{database}}.events AS e
    WHERE e.site_id = {{site:String}} AND e.type = 'page' AND {_in_range("e.timestamp")}
      AND {{events_filtered:e}}
    GROUP BY path
) AS views ON exits.path = views.path
ORDER BY exits.exits DESC, exits.path
"""


def shop_metrics(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange | None = None,
    session_timeout: timedelta = timedelta(minutes=30),
    filters: Filters = NO_FILTERS,
) -> ShopMetrics:
    params: dict[str, Any] = {"site": site_id} | _range(days)

    def ask(sql: str, more: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return _ask(warehouse, sql, params | (more or {}), filters)

    if filters:
        sessions, converting, engaged = ask(_SESSIONS_SQL)[0]
    else:  # the same counts from sessions_daily's bitmaps, without reading every snapshot
        sessions, engaged, converting = ask(_SESSIONS_FROM_AGGREGATES_SQL)[0]
    buyers, repeat, orders, revenue, refunded = ask(
        _BUYERS_SQL, {"orders": sorted(model.order_events), "refund": REFUND_EVENT}
    )[0]
    (abandoned,) = ask(_ABANDONED_SQL)[0]
    (seconds_on_page,) = ask(
        _TIME_ON_PAGE_SQL, {"timeout_ms": int(session_timeout.total_seconds() * 1000)}
    )[0]
    nps, promoters, detractors, csat, satisfied = ask(
        _SURVEYS_SQL, {"nps": NPS_EVENT, "csat": CSAT_EVENT}
    )[0]
    delivered, opened = ask(
        _EMAILS_SQL, {"delivered": EMAIL_DELIVERED_EVENT, "opened": EMAIL_OPENED_EVENT}
    )[0]
    exit_pages = [
        ExitPage(path, int(exits), int(views or 0)) for path, exits, views in ask(_EXIT_PAGES_SQL)
    ]
    return ShopMetrics(
        site=site_id,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        sessions=int(sessions),
        converting_sessions=int(converting),
        engaged_sessions=int(engaged),
        carts_abandoned=int(abandoned),
        buyers=int(buyers),
        repeat_buyers=int(repeat),
        orders=int(orders),
        # In cents: a sum of floats varies in its last bits with the order it was summed in.
        revenue=round(float(revenue or 0), 2),
        refunded=round(float(refunded or 0), 2),
        average_seconds_on_page=(
            None if seconds_on_page is None or math.isnan(seconds_on_page) else seconds_on_page
        ),
        nps_answers=int(nps),
        nps_promoters=int(promoters),
        nps_detractors=int(detractors),
        csat_answers=int(csat),
        csat_satisfied=int(satisfied),
        emails_delivered=int(delivered),
        emails_opened=int(opened),
        exit_pages=exit_pages,
    )


# Whose an event is: the customer who claimed the id it was recorded under, else that id (the
# user id when the shop knew it, the device's anonymous id otherwise).
_PERSON_OF_EVENT = _person("own_id")


def _step_condition(step: FunnelStep, parameter: str) -> str:
    if not step.is_page:
        return f"(e.type = 'track' AND e.event = {{{parameter}:String}})"
    if step.path is None:
        return "(e.type = 'page')"
    return (
        f"(e.type = 'page' AND (e.page_path = {{{parameter}:String}}"
        f" OR startsWith(e.page_path, concat({{{parameter}:String}}, '/'))))"
    )


def _period_of(ms: str) -> str:
    """The period (0, 1, …) an instant in ms falls in: whole UTC days from {first_day}, in
    periods of {grain_days}."""
    return f"intDiv(intDiv(toInt64({ms}), 86400000) - {{first_day:Int64}}, {{grain_days:Int64}})"


def _step_mask(steps: Sequence[FunnelStep]) -> str:
    """Bit i set when event `e` is step i + 1 (one event can be two steps)."""
    return " + ".join(
        f"{1 << i} * {_step_condition(step, f's{i}')}" for i, step in enumerate(steps)
    )


def _person_events_sql(steps: Sequence[FunnelStep], relevant: str) -> str:
    """(person, ts, event_id, mask, name) of the events a step funnel reads (`relevant`)."""
    return f"""
        SELECT {_PERSON_OF_EVENT} AS person,
               toUInt64(toUnixTimestamp64Milli(e.timestamp)) AS ts,
               e.event_id AS event_id, toUInt64({_step_mask(steps)}) AS mask, e.event AS name
        FROM (SELECT *, if(user_id != '', user_id, anonymous_id) AS own_id
              FROM {{database}}.events AS ev
              WHERE site_id = {{site:String}} AND NOT is_bot AND {{events_filtered:ev}}
                AND timestamp >= fromUnixTimestamp64Milli({{since_ms:Int64}})
                AND timestamp < fromUnixTimestamp64Milli({{horizon_ms:Int64}})) AS e
        {_claimed("e.own_id")}
        WHERE {relevant}
    """


STOPPED_EVENTS_SHOWN = 3


def _stopped_then_sql(steps: Sequence[FunnelStep], window_ms: int) -> str:
    """Per step people stopped at (in order, 1 to n - 1), the track events other than the
    funnel's own that most of them did in the window after they began: where a payment fails,
    "Payment Failed" follows "Checkout Started"."""
    first = "bitTest(mask, 0) AND ts < {until_ms:UInt64}"
    later = "".join(f", bitTest(mask, {i})" for i in range(1, len(steps)))
    funnel_events = _person_events_sql(steps, f"({_step_mask(steps)}) != 0")
    others = _person_events_sql(steps, f"e.type = 'track' AND ({_step_mask(steps)}) = 0")
    return f"""
        SELECT level, name, uniqExact(person) AS people
        FROM (
            SELECT person, windowFunnel({window_ms})(ts, {first}{later}) AS level,
                   minIf(ts, {first}) AS began
            FROM ({funnel_events}) GROUP BY person
        ) AS stopped
        INNER JOIN ({others}) AS did USING person
        WHERE level BETWEEN 1 AND {len(steps) - 1}
          AND did.ts > stopped.began AND did.ts <= stopped.began + {window_ms}
        GROUP BY level, name
        ORDER BY level, people DESC, name
        LIMIT {STOPPED_EVENTS_SHOWN} BY level
    """


def _step_funnel_sql(
    steps: Sequence[FunnelStep], order: FunnelOrder, window_ms: int, by_period: bool = False
) -> str:
    """How many people got furthest to each level of the funnel (`by_period`: per period of
    the chain's first step, as (period, level, people)).

    A chain must begin inside the date range (before {until_ms}); its later steps may come up to
    the window after it, so someone who entered on the range's last day is not counted as lost.
    Each event carries a mask, bit i set when it is step i + 1 (one event can be two steps).
    By period, a person's chains are sorted by the period they began in and each period counts
    the person once, at the furthest a chain begun in it got: what the funnel of that period
    alone says, in one reading of the events.
    """
    # A strict funnel is broken by anything the person did in between, so it reads every page
    # view and track event; the other orders need only the steps' own events.
    relevant = (
        "e.type IN ('page', 'track')"
        if order is FunnelOrder.STRICT
        else f"({_step_mask(steps)}) != 0"
    )
    person_events = _person_events_sql(steps, relevant)
    if order is FunnelOrder.ORDERED:
        # windowFunnel: the longest ordered chain inside the window; other events between the
        # steps do not break it.
        first = "bitTest(mask, 0) AND ts < {until_ms:UInt64}"
        later = "".join(f", bitTest(mask, {i})" for i in range(1, len(steps)))
        if not by_period:
            return f"""
                SELECT level, count() FROM (
                    SELECT person, windowFunnel({window_ms})(ts, {first}{later}) AS level
                    FROM ({person_events}) GROUP BY person)
                WHERE level > 0 GROUP BY level
            """
        # Once per period the person began a chain in, the chain begun in that period.
        return f"""
            SELECT period, level, count() FROM (
                SELECT person, period,
                       windowFunnel({window_ms})(ts, {first} AND {_period_of("ts")} = period
                                                 {later}) AS level
                FROM ({person_events}) AS pe
                INNER JOIN (
                    SELECT person, arrayJoin(groupUniqArray({_period_of("ts")})) AS period
                    FROM ({person_events}) WHERE {first} GROUP BY person
                ) AS starts USING person
                GROUP BY person, period)
            WHERE level > 0 GROUP BY period, level
        """
    # seq: the person's events in time order as (ms, event_id, mask); per start x, how far the
    # chain that begins there gets.
    if order is FunnelOrder.STRICT:
        # The j-th event from the start must be step j, inside the window. Past the end
        # seq[...] is an empty tuple.
        starts = (
            "arrayMap((x, p) -> (x.1, if(bitTest(x.3, 0) AND x.1 < {until_ms:UInt64}, "
            "arrayFirstIndex(j -> NOT (bitTest(seq[p + j - 1].3, j - 1) AND "
            f"seq[p + j - 1].1 <= x.1 + {window_ms}), range(1, {len(steps) + 2})) - 1, 0)), "
            "seq, arrayEnumerate(seq))"
        )
    else:
        # The most distinct steps inside one window that begins with a step in the range.
        starts = (
            "arrayMap(x -> (x.1, if(x.1 < {until_ms:UInt64}, bitCount(arrayReduce("
            "'groupBitOr', arrayMap(y -> y.3, arrayFilter(y -> y.1 >= x.1 AND "
            f"y.1 <= x.1 + {window_ms}, seq)))), 0)), seq)"
        )
    sequences = f"""
        SELECT person, arraySort(groupArray((ts, event_id, mask))) AS seq
        FROM ({person_events}) GROUP BY person
    """
    if not by_period:
        return f"""
            SELECT level, count() FROM (
                SELECT arrayMax(arrayMap(x -> x.2, {starts})) AS level FROM ({sequences}))
            WHERE level > 0 GROUP BY level
        """
    return f"""
        SELECT period, level, count() FROM (
            SELECT person, {_period_of("chain.1")} AS period, max(chain.2) AS level
            FROM ({sequences}) ARRAY JOIN arrayFilter(y -> y.2 > 0, {starts}) AS chain
            GROUP BY person, period)
        GROUP BY period, level
    """


@dataclass(frozen=True)
class StoppedThen:
    """People who got as far as `after_step` and no further, who then did `event`."""

    after_step: str
    event: str
    people: int


@dataclass(frozen=True)
class StepFunnel:
    order: FunnelOrder
    window: timedelta
    steps: list[StepReach]
    stopped_then: list[StoppedThen]


def step_funnel(
    warehouse: Warehouse,
    site_id: str,
    steps: Sequence[FunnelStep],
    order: FunnelOrder,
    window: timedelta,
    days: DateRange,
    filters: Filters = NO_FILTERS,
) -> StepFunnel:
    """People (a customer with every device they logged in from counts once) who went through
    the steps in the given order within `window` of the first step, having entered in `days`."""
    window_ms, parameters = _step_parameters(site_id, steps, order, window, days)
    rows = _ask(warehouse, _step_funnel_sql(steps, order, window_ms), parameters, filters)
    by_level = {int(level): int(people) for level, people in rows}
    # What those who stopped did next is read for an ordered funnel, whose steps have an after.
    stopped = [
        StoppedThen(steps[int(level) - 1].spec, name, int(people))
        for level, name, people in (
            _ask(warehouse, _stopped_then_sql(steps, window_ms), parameters, filters)
            if order is FunnelOrder.ORDERED
            else []
        )
    ]
    return StepFunnel(order, window, step_reach(steps, by_level), stopped)


def _step_parameters(
    site_id: str,
    steps: Sequence[FunnelStep],
    order: FunnelOrder,
    window: timedelta,
    days: DateRange,
) -> tuple[int, dict[str, Any]]:
    """The window in ms and the query parameters of a step funnel, once its steps are valid."""
    check_steps(steps, order)
    if window <= timedelta(0):
        raise ValueError("the conversion window must be positive")
    window_ms = int(window.total_seconds() * 1000)
    parameters: dict[str, Any] = {
        "site": site_id,
        "since_ms": to_millis(days.since),
        "until_ms": to_millis(days.until),
        "horizon_ms": to_millis(days.until) + window_ms,
    }
    for i, step in enumerate(steps):
        if not step.is_page or step.path is not None:
            parameters[f"s{i}"] = step.path if step.is_page else step.spec
    return window_ms, parameters


@dataclass(frozen=True)
class TouchpointCredit:
    """Journeys that moved to `phase` credited to a touchpoint and channel: by the one that
    moved them there (last touch) and by the one that began their journey (first touch)."""

    phase: str
    touchpoint: str
    channel: str
    last_touch: int
    first_touch: int | None


_JOURNEY_OF_TRANSITION = _person("t.journey_id")
# A journey "moved to" a phase when it got there as its furthest yet (entering counts for the
# first phase); falling back and advancing again into a phase it knew is not new progress.
_MOVED = "t.kind IN ('entered', 'advanced') AND t.to_phase = t.furthest_phase"
# The last touch of a phase is the one that moved the customer there first in the range (two
# devices entering the same customer's journey do not both get the credit).
_LAST_TOUCH_SQL = f"""
SELECT phase, moved.1 AS touchpoint, moved.2 AS channel, count()
FROM (
    SELECT {_JOURNEY_OF_TRANSITION} AS journey, t.to_phase AS phase,
           argMin((t.touchpoint, t.channel), t.at) AS moved
    FROM {{database}}.phase_transitions AS t
    {_claimed("t.journey_id")}
    WHERE t.site_id = {{site:String}} AND {_MOVED} AND {_in_range("t.at")}
      AND {{transitions_filtered:t}}
    GROUP BY journey, phase
)
GROUP BY phase, touchpoint, channel
"""
# The first touch is the customer's earliest entry over all time (of any id they claimed: the
# phone's first visit, not the laptop's), credited for every phase reached in the range.
_FIRST_TOUCH_SQL = f"""
SELECT phase, first.1 AS touchpoint, first.2 AS channel, count()
FROM (
    SELECT {_JOURNEY_OF_TRANSITION} AS journey,
           argMinIf((t.touchpoint, t.channel), t.at, t.kind = 'entered') AS first,
           groupUniqArrayIf(t.to_phase, {_MOVED} AND {_in_range("t.at")}
                            AND {{transitions_filtered:t}}) AS reached
    FROM {{database}}.phase_transitions AS t
    {_claimed("t.journey_id")}
    WHERE t.site_id = {{site:String}}
    GROUP BY journey
)
ARRAY JOIN reached AS phase
GROUP BY phase, touchpoint, channel
"""


def touchpoints(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange | None = None,
    filters: Filters = NO_FILTERS,
) -> list[TouchpointCredit]:
    """First- and last-touch credit per phase, touchpoint and channel; phases in the model's
    order, then the most credited first."""
    params = {"site": site_id} | _range(days)
    credit: dict[tuple[str, str, str], list[int]] = {}
    for position, sql in enumerate((_LAST_TOUCH_SQL, _FIRST_TOUCH_SQL)):
        for phase, touchpoint, channel, journeys in _ask(warehouse, sql, params, filters):
            if phase in model.phases:
                key = (phase, touchpoint or "unknown", channel or "unknown")
                credit.setdefault(key, [0, 0])[position] += int(journeys)
    rows = [
        TouchpointCredit(phase, touchpoint, channel, last, first)
        for (phase, touchpoint, channel), (last, first) in credit.items()
    ]
    rows.sort(
        key=lambda r: (model.index(r.phase), -r.last_touch, -(r.first_touch or 0), r.touchpoint)
    )
    return rows


def given_serials(warehouse: Warehouse, partition: int = 0) -> list[int]:
    """The highest journey and session serials of a journeys partition that the warehouse holds
    numbers of. A sessionizer whose state is older than its outputs (embedded mode after a
    crash) goes on from these, so it never gives a number twice."""
    low, high = journey_number(partition, 0), journey_number(partition + 1, 0)
    ((journeys, sessions),) = warehouse.query(
        "SELECT (SELECT max(journey_number) FROM {database}.phase_transitions "
        "WHERE journey_number >= {low:UInt64} AND journey_number < {high:UInt64}), "
        "(SELECT max(session_number) FROM {database}.sessions "
        "WHERE session_number >= {low:UInt64} AND session_number < {high:UInt64})",
        {"low": low, "high": high},
    )
    return [max(0, int(journeys) - low), max(0, int(sessions) - low)]


@dataclass(frozen=True)
class DayFigures:
    day: date
    sessions: int
    engaged_sessions: int
    converting_sessions: int
    journeys_by_phase: dict[str, int]  # journeys that got at least this far on the day

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        return _share(self.converting_sessions, self.sessions)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def from_previous_phase(self) -> dict[str, float | None]:
        """Per phase, of the journeys that got to the phase before on the day, the share that got
        this far: an incident shows as a dip on the days it lasted."""
        return _from_previous_phase(self.journeys_by_phase)


def _from_previous_phase(journeys_by_phase: dict[str, int]) -> dict[str, float | None]:
    phases = list(journeys_by_phase)
    shares = from_previous([journeys_by_phase[p] for p in phases])
    return dict(zip(phases, shares, strict=True))


# Both read the aggregates the materialized views keep (migrations 0007 and 0015), never raw
# rows: bitmaps of journey and session numbers, so the counts are exact (0015 says why). Events
# carry no number: activity_daily's states are uniqCombined(14) estimates (0007).
_MERGE, _MERGE_IF = "groupBitmapMerge", "groupBitmapMergeIf"
_ESTIMATE, _ESTIMATE_IF = "uniqCombinedMerge(14)", "uniqCombinedMergeIf(14)"
GRAINS = {"day": 1, "week": 7}


def _period_start(day: str) -> str:
    """The first day of the period (of {grain_days} days from {first}) the Date `day` is in."""
    return (
        f"addDays({{first:Date}}, intDiv(dateDiff('day', {{first:Date}}, {day}), "
        f"{{grain_days:UInt32}}) * {{grain_days:UInt32}})"
    )


_SESSIONS_BY_DAY_SQL = f"""
SELECT {_period_start("day")} AS period, {_MERGE}(sessions), {_MERGE}(engaged_sessions),
       {_MERGE}(converting_sessions)
FROM {{database}}.sessions_daily
WHERE site_id = {{site:String}} AND day BETWEEN {{first:Date}} AND {{last:Date}}
GROUP BY period
"""


def _reach_columns(model: PhaseModel) -> str:
    """One merged state per phase: the journeys whose furthest phase is it or a later one."""
    return ", ".join(
        f"{_MERGE_IF}(journeys, indexOf({{phases:Array(String)}}, phase) >= {position})"
        for position in range(1, len(model.phases) + 1)
    )


# With filters, trends and breakdowns read raw rows, counted as the aggregates count them
# (journeys as recorded, sessions by the day they began): the aggregates are kept per day and
# one dimension, not per selection of visits.
def _raw_reach_columns(model: PhaseModel) -> str:
    return ", ".join(
        f"uniqExactIf(t.journey_id, indexOf({{phases:Array(String)}}, t.furthest_phase) "
        f">= {position})"
        for position in range(1, len(model.phases) + 1)
    )


def _raw_reach_sql(model: PhaseModel, key: str, join: str = "") -> str:
    """Per `key` (an expression over transition `t`, and what `join` adds): journeys by how far
    they got."""
    return f"""
        SELECT {key} AS key, {_raw_reach_columns(model)}
        FROM {{database}}.phase_transitions AS t {join}
        WHERE t.site_id = {{site:String}} AND t.kind != 'dropped_off'
          AND toDate(t.at) BETWEEN {{first:Date}} AND {{last:Date}}
          AND {{transitions_filtered:t}}
        GROUP BY key
    """


def _raw_sessions_sql(key: str, join: str = "") -> str:
    """Per `key` (day or channel of a session, or what `join` adds): sessions, engaged,
    converting."""
    return f"""
        SELECT {key} AS key, count(), countIf(engaged), countIf(conversions > 0)
        FROM (
            SELECT session_id, min(started_at) AS started_at, argMax(channel, version) AS channel,
                   argMax(engaged, version) AS engaged,
                   argMax(conversions, version) AS conversions
            FROM {{database}}.sessions
            WHERE site_id = {{site:String}} AND {{sessions_filtered}}
            GROUP BY session_id
        ) AS s {join}
        WHERE toDate(started_at) BETWEEN {{first:Date}} AND {{last:Date}}
        GROUP BY key
    """


_RAW_ACTIVITY_BY_DEVICE_SQL = """
SELECT e.device, uniqExact(if(e.user_id != '', e.user_id, e.anonymous_id)),
       uniqExactIf(e.event_id, e.type = 'page')
FROM {database}.events AS e
WHERE e.site_id = {site:String} AND e.type IN ('page', 'track') AND NOT e.is_bot
  AND toDate(e.timestamp) BETWEEN {first:Date} AND {last:Date} AND {events_filtered:e}
GROUP BY e.device
"""


def trends(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange,
    filters: Filters = NO_FILTERS,
    grain: str = "day",
) -> list[DayFigures]:
    """Per day (or week of seven days from `days.first`, the last cut at `days.last`) of `days`,
    periods without data included as zeros: sessions, and journeys by how far they got in the
    period. A week's counts are its own distinct journeys and sessions (bitmaps merged), not a
    sum of its days."""
    if grain not in GRAINS:
        raise ValueError(f"a period is one of {', '.join(GRAINS)}, not {grain!r}")
    params = {
        "site": site_id,
        "first": days.first,
        "last": days.last,
        "grain_days": GRAINS[grain],
    }
    if filters:
        sessions_sql = _raw_sessions_sql(_period_start("toDate(started_at)"))
        reach_sql = _raw_reach_sql(model, _period_start("toDate(t.at)"))
    else:
        sessions_sql = _SESSIONS_BY_DAY_SQL
        reach_sql = f"""
            SELECT {_period_start("day")} AS period, {_reach_columns(model)}
            FROM {{database}}.phase_reach_daily
            WHERE site_id = {{site:String}} AND day BETWEEN {{first:Date}} AND {{last:Date}}
            GROUP BY period
        """
    sessions = {row[0]: row[1:] for row in _ask(warehouse, sessions_sql, params, filters)}
    reach = {
        row[0]: row[1:]
        for row in _ask(warehouse, reach_sql, params | {"phases": list(model.phases)}, filters)
    }
    figures = []
    for day in days.days[:: GRAINS[grain]]:
        total, engaged, converting = sessions.get(day, (0, 0, 0))
        by_phase = reach.get(day, (0,) * len(model.phases))
        figures.append(
            DayFigures(
                day=day,
                sessions=int(total),
                engaged_sessions=int(engaged),
                converting_sessions=int(converting),
                journeys_by_phase={p: int(n) for p, n in zip(model.phases, by_phase, strict=True)},
            )
        )
    return figures


@dataclass(frozen=True)
class BreakdownRow:
    value: str  # the channel, device, segment or campaign
    journeys_by_phase: dict[str, int]
    sessions: int | None  # by channel, campaign or own segment; a session has no one device
    converting_sessions: int | None
    people: int | None  # people who viewed a page or did something; by device only
    page_views: int | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def from_previous_phase(self) -> dict[str, float | None]:
        """Per phase, the share of the journeys that reached the phase before that got this far:
        where this channel, device or segment converts, or loses people, unlike the others."""
        return _from_previous_phase(self.journeys_by_phase)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        if self.sessions is None:
            return None
        return _share(self.converting_sessions or 0, self.sessions)


BREAKDOWNS = ("channel", "device", "segment", "campaign")
OWN_SEGMENT_PREFIX = "segment:"


def breakdown(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    by: str,
    days: DateRange,
    filters: Filters = NO_FILTERS,
) -> list[BreakdownRow]:
    """The phase funnel split by the channel, device or segment (new or returning) of the
    events that moved journeys, or by the campaign or a segment of the shop's own
    (`segment:<key>`) of the visits they moved in, with sessions and their conversion per
    channel, campaign or own segment, or people and page views per device, busiest first."""
    own_key = by.removeprefix(OWN_SEGMENT_PREFIX) if by.startswith(OWN_SEGMENT_PREFIX) else None
    if by not in BREAKDOWNS and (own_key is None or not SEGMENT_KEY.fullmatch(own_key)):
        raise ValueError(
            f"a breakdown is by one of {', '.join(BREAKDOWNS)} or segment:<key>, not {by!r}"
        )
    params: dict[str, Any] = {"site": site_id, "first": days.first, "last": days.last}
    in_days = "site_id = {site:String} AND day BETWEEN {first:Date} AND {last:Date}"
    by_visit = by == "campaign" or own_key is not None
    if by_visit:
        # A visit may hold several values of an own segment: it counts under each.
        join = f"INNER JOIN ({visit_values(by)}) AS vv ON ALIAS.session_id = vv.session_id"
        reach_sql = _raw_reach_sql(
            model, "vv.value", join.replace("ALIAS.session_id", "t.session_id")
        )
        sessions_sql = _raw_sessions_sql(
            "vv.value", join.replace("ALIAS.session_id", "s.session_id")
        )
        activity_sql = ""
        params["breakdown_key"] = own_key or ""
    elif filters:
        reach_sql = _raw_reach_sql(model, f"t.{by}")
        sessions_sql = _raw_sessions_sql("channel")
        activity_sql = _RAW_ACTIVITY_BY_DEVICE_SQL
    else:
        reach_sql = (
            f"SELECT {by}, {_reach_columns(model)} FROM {{database}}.phase_reach_{by}_daily "
            f"WHERE {in_days} GROUP BY {by}"
        )
        sessions_sql = (
            f"SELECT channel, {_MERGE}(sessions), 0, {_MERGE}(converting_sessions) "
            f"FROM {{database}}.sessions_daily WHERE {in_days} GROUP BY channel"
        )
        activity_sql = (
            f"SELECT device, {_ESTIMATE}(people), {_ESTIMATE_IF}(events, action = 'page') "
            f"FROM {{database}}.activity_daily WHERE {in_days} GROUP BY device"
        )
    reach = {
        row[0]: row[1:]
        for row in _ask(warehouse, reach_sql, params | {"phases": list(model.phases)}, filters)
    }
    sessions: dict[str, tuple[int, int]] = {}
    activity: dict[str, tuple[int, int]] = {}
    with_sessions = by == "channel" or by_visit
    if with_sessions:
        for value, total, _, converting in _ask(warehouse, sessions_sql, params, filters):
            sessions[value] = (int(total), int(converting))
    elif by == "device":
        for device, people, views in _ask(warehouse, activity_sql, params, filters):
            activity[device] = (int(people), int(views))
    rows = []
    for value in sorted(set(reach) | set(sessions) | set(activity)):
        by_phase = reach.get(value, (0,) * len(model.phases))
        total, converting = sessions.get(value, (0, 0))
        people, views = activity.get(value, (0, 0))
        rows.append(
            BreakdownRow(
                value=value or "unknown",
                journeys_by_phase={p: int(n) for p, n in zip(model.phases, by_phase, strict=True)},
                sessions=total if with_sessions else None,
                converting_sessions=converting if with_sessions else None,
                people=people if by == "device" else None,
                page_views=views if by == "device" else None,
            )
        )
    rows.sort(key=lambda r: (-(r.sessions or r.people or 0), -sum(r.journeys_by_phase.values())))
    return rows


# --- the same figures from the daily aggregates: journeys as recorded, any range in milliseconds


def _in_days(days: DateRange) -> dict[str, Any]:
    return {"first": days.first, "last": days.last}


_IN_DAYS = "site_id = {site:String} AND day BETWEEN {first:Date} AND {last:Date}"


def recorded_phase_funnel(
    warehouse: Warehouse, site_id: str, model: PhaseModel, days: DateRange
) -> list[PhaseReach]:
    """Journeys that got at least this far in `days`, counted as recorded (an anonymous journey
    a customer claimed later counts apart), from phase_reach_daily."""
    (row,) = warehouse.query(
        f"SELECT {_reach_columns(model)} FROM {{database}}.phase_reach_daily WHERE {_IN_DAYS}",
        {"site": site_id, "phases": list(model.phases)} | _in_days(days),
    )
    return reach_of(model.phases, [int(n) for n in row])


def recorded_dropoff(
    warehouse: Warehouse, site_id: str, model: PhaseModel, days: DateRange
) -> list[PhaseDropoff]:
    """Per phase: journeys that reached it in `days` and journeys that dropped off there in
    `days` (whether or not they came back later), as recorded; no touchpoint breakdown."""
    reached = {r.phase: r.journeys for r in recorded_phase_funnel(warehouse, site_id, model, days)}
    dropped = dict(
        warehouse.query(
            f"SELECT phase, {_MERGE}(journeys) FROM {{database}}.dropoffs_daily "
            f"WHERE {_IN_DAYS} GROUP BY phase",
            {"site": site_id} | _in_days(days),
        )
    )
    return [
        PhaseDropoff(phase, reached.get(phase, 0), int(dropped.get(phase, 0)), {})
        for phase in model.phases
    ]


def recorded_touchpoints(
    warehouse: Warehouse, site_id: str, model: PhaseModel, days: DateRange
) -> list[TouchpointCredit]:
    """Last-touch credit per phase, touchpoint and channel in `days`, as recorded; first touch
    needs each journey's whole history and is left out (None)."""
    rows = [
        TouchpointCredit(phase, touchpoint or "unknown", channel or "unknown", int(n), None)
        for phase, touchpoint, channel, n in warehouse.query(
            f"SELECT phase, touchpoint, channel, {_MERGE}(journeys) "
            f"FROM {{database}}.touchpoints_daily WHERE {_IN_DAYS} "
            f"GROUP BY phase, touchpoint, channel",
            {"site": site_id} | _in_days(days),
        )
        if phase in model.phases
    ]
    rows.sort(key=lambda r: (model.index(r.phase), -r.last_touch, r.touchpoint))
    return rows


@dataclass(frozen=True)
class PeriodSteps:
    """A step funnel of the people who did its first step in one period (a day or a week)."""

    first: date
    last: date
    steps: list[StepReach]


def step_trends(
    warehouse: Warehouse,
    site_id: str,
    steps: Sequence[FunnelStep],
    order: FunnelOrder,
    window: timedelta,
    days: DateRange,
    grain: str = "day",
    filters: Filters = NO_FILTERS,
) -> list[PeriodSteps]:
    """The step funnel per day or week of `days` (a week is seven days from `days.first`, the
    last one cut at `days.last`): an incident at one step shows as a dip in its conversion on
    the periods it lasted. Each period is the step funnel of those who entered in it, so a
    period's figures equal the step funnel asked for that period alone; one query answers all
    periods."""
    if grain not in GRAINS:
        raise ValueError(f"a period is one of {', '.join(GRAINS)}, not {grain!r}")
    window_ms, parameters = _step_parameters(site_id, steps, order, window, days)
    parameters |= {"first_day": (days.first - date(1970, 1, 1)).days, "grain_days": GRAINS[grain]}
    levels: dict[int, dict[int, int]] = {}
    for period, level, people in _ask(
        warehouse, _step_funnel_sql(steps, order, window_ms, by_period=True), parameters, filters
    ):
        levels.setdefault(int(period), {})[int(level)] = int(people)
    periods = []
    for number, first in enumerate(days.days[:: GRAINS[grain]]):
        last = min(days.last, first + timedelta(days=GRAINS[grain] - 1))
        periods.append(PeriodSteps(first, last, step_reach(steps, levels.get(number, {}))))
    return periods


@dataclass(frozen=True)
class MapNode:
    """A cell of the journey map: journeys that arrived in `phase` through `touchpoint`."""

    phase: str
    touchpoint: str
    journeys: int
    exits: int  # of them, those whose next word was dropping off
    stayed: int  # of them, those with nothing after it in the range


@dataclass(frozen=True)
class MapFlow:
    """Journeys that went from one cell straight to another."""

    from_phase: str
    from_touchpoint: str
    to_phase: str
    to_touchpoint: str
    journeys: int


@dataclass(frozen=True)
class JourneyMap:
    nodes: list[MapNode]
    flows: list[MapFlow]


# Each arrival (entering, advancing, falling back, returning) is a cell; what followed it in the
# journey is its next arrival, a drop-off (an exit) or nothing yet. FINAL: a transition stored
# twice would otherwise read as a flow from a cell to itself. Journeys are counted as recorded.
_MAP_SQL = f"""
SELECT phase, touchpoint, next_kind, next_phase, next_touchpoint, uniqExact(journey_id)
FROM (
    SELECT t.journey_id AS journey_id, t.kind AS kind, t.to_phase AS phase,
           t.touchpoint AS touchpoint,
           leadInFrame(t.kind, 1, '') OVER w AS next_kind,
           leadInFrame(t.to_phase, 1, '') OVER w AS next_phase,
           leadInFrame(t.touchpoint, 1, '') OVER w AS next_touchpoint
    FROM {{database}}.phase_transitions AS t FINAL
    WHERE t.site_id = {{site:String}} AND t.kind != 'merged' AND {_in_range("t.at")}
      AND {{transitions_filtered:t}}
    WINDOW w AS (PARTITION BY t.journey_id ORDER BY t.at, t.kind != 'entered', t.transition_id
                 ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
)
WHERE kind != 'dropped_off'
GROUP BY phase, touchpoint, next_kind, next_phase, next_touchpoint
"""


def journey_map(
    warehouse: Warehouse,
    site_id: str,
    model: PhaseModel,
    days: DateRange | None = None,
    filters: Filters = NO_FILTERS,
) -> JourneyMap:
    """The journey map from data: phases as columns, the touchpoints that brought journeys into
    each as its cells, the flows between cells and the exits out of them. A cell counts each
    journey once however often it arrived there."""
    arrivals: dict[tuple[str, str], list[int]] = {}
    flows: dict[tuple[str, str, str, str], int] = {}
    for phase, touchpoint, next_kind, next_phase, next_touchpoint, journeys in _ask(
        warehouse, _MAP_SQL, {"site": site_id} | _range(days), filters
    ):
        if phase not in model.phases:
            continue
        cell = arrivals.setdefault((phase, touchpoint or "unknown"), [0, 0, 0])
        cell[0] += int(journeys)
        if next_kind == "dropped_off":
            cell[1] += int(journeys)
        elif next_kind == "":
            cell[2] += int(journeys)
        elif next_phase in model.phases:
            key = (phase, touchpoint or "unknown", next_phase, next_touchpoint or "unknown")
            flows[key] = flows.get(key, 0) + int(journeys)
    nodes = [
        MapNode(phase, touchpoint, journeys, exits, stayed)
        for (phase, touchpoint), (journeys, exits, stayed) in arrivals.items()
    ]
    nodes.sort(key=lambda n: (model.index(n.phase), -n.journeys, n.touchpoint))
    return JourneyMap(
        nodes,
        sorted(
            (MapFlow(*key, journeys) for key, journeys in flows.items()),
            key=lambda f: (model.index(f.from_phase), -f.journeys, f.from_touchpoint),
        ),
    )


# Several rows of one journey in a cell: its latest arrival there names it.
_JOURNEYS_IN_CELL_SQL = f"""
SELECT t.journey_id, max(t.at) AS at
FROM {{database}}.phase_transitions AS t
WHERE t.site_id = {{site:String}} AND t.to_phase = {{phase:String}}
  AND t.touchpoint = {{touchpoint:String}}
  AND t.kind IN ('entered', 'advanced', 'fell_back', 'returned') AND {_in_range("t.at")}
  AND {{transitions_filtered:t}}
GROUP BY t.journey_id
ORDER BY at DESC, t.journey_id
LIMIT {{limit:UInt32}}
"""


def journeys_in_cell(
    warehouse: Warehouse,
    site_id: str,
    phase: str,
    touchpoint: str,
    days: DateRange | None = None,
    filters: Filters = NO_FILTERS,
    limit: int = 50,
) -> list[str]:
    """The journeys behind a cell of the map, the latest arrivals first."""
    rows = _ask(
        warehouse,
        _JOURNEYS_IN_CELL_SQL,
        {
            "site": site_id,
            "phase": phase,
            "touchpoint": "" if touchpoint == "unknown" else touchpoint,
            "limit": limit,
        }
        | _range(days),
        filters,
    )
    return [journey_id for journey_id, _ in rows]


@dataclass(frozen=True)
class RecentSignal:
    signal_id: str
    kind: str
    phase: str
    journey_id: str
    at: datetime


_RECENT_SIGNALS_SQL = """
SELECT g.signal_id, any(g.kind), any(g.phase), any(g.journey_id), max(g.at) AS at
FROM {database}.signals AS g
WHERE g.site_id = {site:String} AND g.at > fromUnixTimestamp64Milli({after_ms:Int64})
  AND toDate(g.at) >= toDate(fromUnixTimestamp64Milli({after_ms:Int64}))
  AND {signals_filtered:g}
GROUP BY g.signal_id
ORDER BY at DESC, g.signal_id
LIMIT {limit:UInt32}
"""


def recent_signals(
    warehouse: Warehouse,
    site_id: str,
    after: datetime | None = None,
    filters: Filters = NO_FILTERS,
    limit: int = 50,
) -> list[RecentSignal]:
    """The newest signals (cart abandoned, dropped off, phase reached, ...), newest first."""
    rows = _ask(
        warehouse,
        _RECENT_SIGNALS_SQL,
        {"site": site_id, "after_ms": to_millis(after) if after else 0, "limit": limit},
        filters,
    )
    return [
        RecentSignal(
            signal_id, kind, phase, journey_id, at.replace(tzinfo=UTC) if at.tzinfo is None else at
        )
        for signal_id, kind, phase, journey_id, at in rows
    ]
