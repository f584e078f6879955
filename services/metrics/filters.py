"""Filters every figure takes: which visits it counts.

A filter selects visits (sessions): those that came in through a channel or a campaign, on a
device, that were a journey's first visit (`new`) or a later one (`returning`), or that belong
to a segment the shop defines (`key:value`, below). Every figure then counts what happened in
those visits: the journeys' moves (`phase_transitions.session_id`), the sessions themselves, the
events (each belongs to the visit of its visitor that began last before it, an ASOF join) and
the signals (the visit of their journey that began last before them). One definition for all,
so a figure filtered by `device=mobile` never disagrees with another.

A visit's device is its visitor's (an anonymous id is one browser on one device); its campaign
is the `utm_campaign` it landed with. A server's event carrying only a `user_id` belongs to the
customer's latest visit, on whatever device.

A shop's own segment, `key:value`, is an event property or a user trait: an event's value is its
property `key`, else the trait `key` of the person's latest identify call at or before it (traits
carry forward; a later identify changes the value from then on). A visit is in the segment when
one of its events has the value, so an A/B bucket sent on every event puts each visit in one
bucket, and a plan bought in the middle of a visit puts that visit in both plans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

SEGMENTS = ("new", "returning")
MAX_VALUE_LENGTH = 200
SEGMENT_KEY = re.compile(r"[A-Za-z0-9_.$-]{1,64}")

# The device of each visitor (an anonymous id): reading it means reading every event, so only a
# device filter joins it.
_DEVICES = """
LEFT JOIN (
    SELECT anonymous_id, argMin(device, timestamp) AS device
    FROM {database}.events
    WHERE site_id = {site:String} AND anonymous_id != ''
    GROUP BY anonymous_id
) AS d ON s.anonymous_id = d.anonymous_id
"""


def _visits_sql(with_device: bool = False) -> str:
    """Every visit of the site with what a filter may ask of it. A session is listed once per id
    it knows its visitor by (the anonymous id, and the user id once they logged in), so an event
    that carries either finds its visit."""
    return f"""
SELECT s.session_id AS session_id, s.latest_journey AS journey_id, s.journey_ids AS journey_ids,
       s.started_at AS started_at,
       arrayJoin(arrayFilter(x -> x != '', [s.anonymous_id, s.user_id])) AS visitor,
       s.channel AS channel,
       if(s.started_at = min(s.started_at) OVER (PARTITION BY s.latest_journey),
          'new', 'returning') AS segment,
       {"ifNull(d.device, 'unknown')" if with_device else "''"} AS device
FROM (
    SELECT session_id, argMax(journey_id, version) AS latest_journey,
           groupUniqArray(journey_id) AS journey_ids, min(started_at) AS started_at,
           argMax(anonymous_id, version) AS anonymous_id, argMax(user_id, version) AS user_id,
           argMax(channel, version) AS channel
    FROM {{database}}.sessions
    WHERE site_id = {{site:String}}
    GROUP BY session_id
) AS s
{_DEVICES if with_device else ""}
"""


# A JSON field as text: a string as it is, a number or a boolean as written ('2', 'true').
_AS_TEXT = (
    "if(JSONType({json}, {{{key}:String}}) = 'String', "
    "JSONExtractString({json}, {{{key}:String}}), "
    "JSONExtractRaw({json}, {{{key}:String}}))"
)


def _events_of_visits(segment_key: str | None) -> str:
    """Each event with the visit it belongs to and what visit-level filters need of it: its
    campaign, and its value of the shop's segment key (the query parameter `segment_key` names),
    its own property else the trait carried forward."""
    own, value, traits = "''", "''", ""
    if segment_key is not None:
        own = _AS_TEXT.format(json="properties", key=segment_key)
        value = "if(x.own != '', x.own, ifNull(tr.trait, ''))"
        traits = f"""
            ASOF LEFT JOIN (
                SELECT if(user_id != '', user_id, anonymous_id) AS person, timestamp,
                       {_AS_TEXT.format(json="traits", key=segment_key)} AS trait
                FROM {{database}}.events
                WHERE site_id = {{site:String}} AND type = 'identify'
                  AND JSONHas(traits, {{{segment_key}:String}})
            ) AS tr ON x.person = tr.person AND x.timestamp >= tr.timestamp"""
    return f"""
        SELECT v.session_id AS session_id, x.timestamp AS timestamp, x.campaign AS campaign,
               {value} AS value
        FROM (
            SELECT if(anonymous_id != '', anonymous_id, user_id) AS visitor,
                   if(user_id != '', user_id, anonymous_id) AS person, timestamp,
                   utm_campaign AS campaign, {own} AS own
            FROM {{database}}.events WHERE site_id = {{site:String}}
        ) AS x
        ASOF JOIN ({_visits_sql()}) AS v ON x.visitor = v.visitor AND x.timestamp >= v.started_at
        {traits}
    """


@dataclass(frozen=True)
class Filters:
    """The visits a figure counts; every field None counts them all. `segment` is `new`,
    `returning`, or a shop's own `key:value`."""

    channel: str | None = None
    device: str | None = None
    campaign: str | None = None
    segment: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and not 0 < len(value) <= MAX_VALUE_LENGTH:
                raise ValueError(f"{field.name} is 1 to {MAX_VALUE_LENGTH} characters")
        if self.segment is not None and self.segment not in SEGMENTS:
            key, colon, value = self.segment.partition(":")
            if not colon or not value or not SEGMENT_KEY.fullmatch(key):
                raise ValueError(
                    f"segment is {' or '.join(SEGMENTS)}, or a property or trait as key:value "
                    f"(a key of letters, digits and _.$-), not {self.segment!r}"
                )

    def __bool__(self) -> bool:
        return any(getattr(self, field.name) is not None for field in fields(self))

    @property
    def given(self) -> dict[str, str]:
        """The filters set, by name: what a response echoes."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if getattr(self, field.name) is not None
        }

    @property
    def own_segment(self) -> tuple[str, str] | None:
        """The shop's segment asked for, as (key, value)."""
        if self.segment is None or self.segment in SEGMENTS:
            return None
        key, _, value = self.segment.partition(":")
        return key, value

    @property
    def parameters(self) -> dict[str, Any]:
        """The query parameters the conditions below refer to."""
        given = {f"filter_{name}": value for name, value in self.given.items()}
        if (own := self.own_segment) is not None:
            given.pop("filter_segment")
            given |= {"filter_segment_key": own[0], "filter_segment_value": own[1]}
        return given

    def _matches(self, alias: str) -> str:
        """The visit in `alias` (a row of _visits_sql) is one the filters select."""
        conditions = [
            f"{alias}.{name} = {{filter_{name}:String}}"
            for name in ("channel", "device")
            if getattr(self, name) is not None
        ]
        if self.segment in SEGMENTS:
            conditions.append(f"{alias}.segment = {{filter_segment:String}}")
        if self.campaign is not None or self.own_segment is not None:
            conditions.append(f"{alias}.session_id IN ({self._visits_by_their_events()})")
        return " AND ".join(conditions) or "1"

    def _visits_by_their_events(self) -> str:
        """Visits whose landing campaign or events' segment values match."""
        conditions = []
        if self.campaign is not None:
            conditions.append("argMin(campaign, timestamp) = {filter_campaign:String}")
        if self.own_segment is not None:
            conditions.append("has(groupUniqArray(value), {filter_segment_value:String})")
        events = _events_of_visits("filter_segment_key" if self.own_segment else None)
        return (
            f"SELECT session_id FROM ({events}) GROUP BY session_id "
            f"HAVING {' AND '.join(conditions)}"
        )

    def _visits(self) -> str:
        return f"SELECT session_id FROM ({self._visit_rows()}) AS v WHERE {self._matches('v')}"

    def _visit_rows(self) -> str:
        return _visits_sql(with_device=self.device is not None)

    def on_sessions(self, column: str = "session_id") -> str:
        """A condition on a row naming its session in `column`."""
        return f"{column} IN ({self._visits()})" if self else "1"

    def on_transitions(self, alias: str = "t") -> str:
        return self.on_sessions(f"{alias}.session_id")

    def on_events(self, alias: str = "e") -> str:
        """A condition on an event row `alias`: the visit it belongs to is selected."""
        if not self:
            return "1"
        return f"""{alias}.event_id IN (
            SELECT x.event_id
            FROM (SELECT event_id, if(anonymous_id != '', anonymous_id, user_id) AS visitor,
                         timestamp
                  FROM {{database}}.events WHERE site_id = {{site:String}}) AS x
            ASOF JOIN ({self._visit_rows()}) AS v
                ON x.visitor = v.visitor AND x.timestamp >= v.started_at
            WHERE {self._matches("v")}
        )"""

    def on_signals(self, alias: str = "g") -> str:
        """A condition on a signal row `alias`: its journey's visit then is selected (a visit
        is listed under every journey id it was recorded under, so a signal of the anonymous
        journey a login later renamed still finds it)."""
        if not self:
            return "1"
        return f"""{alias}.signal_id IN (
            SELECT x.signal_id
            FROM (SELECT signal_id, journey_id, at FROM {{database}}.signals
                  WHERE site_id = {{site:String}}) AS x
            ASOF JOIN (SELECT DISTINCT session_id, arrayJoin(journey_ids) AS journey, started_at,
                              channel, segment, device
                       FROM ({self._visit_rows()})) AS v
                ON x.journey_id = v.journey AND x.at >= v.started_at
            WHERE {self._matches("v")}
        )"""


NO_FILTERS = Filters()


def visit_values(by: str) -> str:
    """(session_id, value) of every visit, per value of `by` a breakdown asks for: `campaign`
    (the one it landed with), or `segment:<key>` (each value its events have, the key in the
    query parameter `breakdown_key`), as the filters read them."""
    if by == "campaign":
        return (
            f"SELECT session_id, argMin(campaign, timestamp) AS value "
            f"FROM ({_events_of_visits(None)}) GROUP BY session_id"
        )
    return (
        f"SELECT DISTINCT session_id, value FROM ({_events_of_visits('breakdown_key')}) "
        f"WHERE value != ''"
    )
