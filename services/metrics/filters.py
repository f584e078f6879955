"""Filters every figure takes: which visits it counts.

A filter selects visits (sessions): those that came in through a channel, on a device, or that
were a journey's first visit (`new`) or a later one (`returning`). Every figure then counts what
happened in those visits: the journeys' moves (`phase_transitions.session_id`), the sessions
themselves, the events (each belongs to the visit of its visitor that began last before it, an
ASOF join) and the signals (the visit of their journey that began last before them). One
definition for all, so a figure filtered by `device=mobile` never disagrees with another.

A visit's device is its visitor's (an anonymous id is one browser on one device); a server's
event carrying only a `user_id` belongs to the customer's latest visit, on whatever device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SEGMENTS = ("new", "returning")
MAX_VALUE_LENGTH = 200

# Every visit of the site with what a filter may ask of it. A session is listed once per id it
# knows its visitor by (the anonymous id, and the user id once they logged in), so an event that
# carries either finds its visit.
_VISITS = """
SELECT s.session_id AS session_id, s.latest_journey AS journey_id, s.journey_ids AS journey_ids,
       s.started_at AS started_at,
       arrayJoin(arrayFilter(x -> x != '', [s.anonymous_id, s.user_id])) AS visitor,
       s.channel AS channel,
       if(s.started_at = min(s.started_at) OVER (PARTITION BY s.latest_journey),
          'new', 'returning') AS segment,
       ifNull(d.device, 'unknown') AS device
FROM (
    SELECT session_id, argMax(journey_id, version) AS latest_journey,
           groupUniqArray(journey_id) AS journey_ids, min(started_at) AS started_at,
           argMax(anonymous_id, version) AS anonymous_id, argMax(user_id, version) AS user_id,
           argMax(channel, version) AS channel
    FROM {database}.sessions
    WHERE site_id = {site:String}
    GROUP BY session_id
) AS s
LEFT JOIN (
    SELECT anonymous_id, argMin(device, timestamp) AS device
    FROM {database}.events
    WHERE site_id = {site:String} AND anonymous_id != ''
    GROUP BY anonymous_id
) AS d ON s.anonymous_id = d.anonymous_id
"""


@dataclass(frozen=True)
class Filters:
    """The visits a figure counts; every field None counts them all."""

    channel: str | None = None
    device: str | None = None
    segment: str | None = None  # new or returning

    def __post_init__(self) -> None:
        if self.segment is not None and self.segment not in SEGMENTS:
            raise ValueError(f"segment is one of {', '.join(SEGMENTS)}, not {self.segment!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and not 0 < len(value) <= MAX_VALUE_LENGTH:
                raise ValueError(f"{field.name} is 1 to {MAX_VALUE_LENGTH} characters")

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
    def parameters(self) -> dict[str, Any]:
        """The query parameters the conditions below refer to."""
        return {f"filter_{name}": value for name, value in self.given.items()}

    def _matches(self, alias: str) -> str:
        """The visit in `alias` is one the filters select."""
        return (
            " AND ".join(f"{alias}.{name} = {{filter_{name}:String}}" for name in self.given) or "1"
        )

    def _visits(self) -> str:
        return f"SELECT session_id FROM ({_VISITS}) AS v WHERE {self._matches('v')}"

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
            ASOF JOIN ({_VISITS}) AS v ON x.visitor = v.visitor AND x.timestamp >= v.started_at
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
            ASOF JOIN (SELECT DISTINCT arrayJoin(journey_ids) AS journey, started_at, channel,
                              segment, device
                       FROM ({_VISITS})) AS v
                ON x.journey_id = v.journey AND x.at >= v.started_at
            WHERE {self._matches("v")}
        )"""


NO_FILTERS = Filters()
