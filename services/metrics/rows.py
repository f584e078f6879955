"""Records from the topics as warehouse rows, table by table.

The columns named here must exist in the migrations' DDL (tests/integration checks it against
the migrated schema); the DDL stays the one definition of each column's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from klantreis.events import DeadLetter, Event
from klantreis.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal

Row = tuple[Any, ...]
Record = Event | SessionSnapshot | PhaseTransition | Signal | IdentityLink | DeadLetter


@dataclass(frozen=True)
class TableMapping:
    """A record type's table and columns, and its row built from the record or straight from
    the record's JSON (as a dict). The JSON path skips building and validating a model: the
    topics are written by klantreis's own services from these models, and the worker decodes
    hundreds of thousands of records a second (tests/unit/test_rows.py checks both paths agree)."""

    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Any], Row]
    from_json: Callable[[dict[str, Any]], Row]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


# Times go to the tables' DateTime64(3) columns as epoch milliseconds, the columns' own ticks:
# given datetimes, clickhouse-connect works out each one's ticks in Python, which took a third
# of an insert's time. Truncated, not rounded, as the column would store the datetime.
def _ms(value: datetime) -> int:
    return (value - _EPOCH) // _MILLISECOND


def _maybe_ms(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MILLISECOND


def _at(value: str) -> int:
    return (datetime.fromisoformat(value) - _EPOCH) // _MILLISECOND


def _maybe_at(value: str | None) -> int | None:
    return None if value is None else (datetime.fromisoformat(value) - _EPOCH) // _MILLISECOND


_EVENT_DEFAULTS = {name: field.default for name, field in Event.model_fields.items()}


def _event_json_row(d: dict[str, Any]) -> Row:
    context = d.get("context") or {}
    page = context.get("page") or {}
    campaign = context.get("campaign") or {}
    return (
        d["site_id"],
        d["event_id"],
        d["type"],
        d.get("event") or "",
        d.get("anonymous_id") or "",
        d.get("user_id") or "",
        _at(d["timestamp"]),
        _maybe_at(d.get("original_timestamp")),
        _maybe_at(d.get("sent_at")),
        _at(d["received_at"]),
        d.get("channel", _EVENT_DEFAULTS["channel"]),
        d.get("device", _EVENT_DEFAULTS["device"]),
        d.get("browser", _EVENT_DEFAULTS["browser"]),
        d.get("is_bot", _EVENT_DEFAULTS["is_bot"]),
        page.get("url") or "",
        page.get("path") or "",
        page.get("title") or "",
        page.get("referrer") or "",
        campaign.get("source") or "",
        campaign.get("medium") or "",
        campaign.get("name") or "",
        campaign.get("term") or "",
        campaign.get("content") or "",
        context.get("user_agent") or "",
        context.get("locale") or "",
        context.get("library") or "",
        orjson.dumps(d.get("properties") or {}).decode(),
        orjson.dumps(d.get("traits") or {}).decode(),
    )


def _session_json_row(d: dict[str, Any]) -> Row:
    return (
        d["site_id"],
        d["session_id"],
        d["journey_id"],
        d["anonymous_id"] or "",
        d["user_id"] or "",
        _at(d["started_at"]),
        _at(d["last_event_at"]),
        d["event_count"],
        d["page_views"],
        d["conversions"],
        d["engaged"],
        d["closed"],
        d["channel"],
        d["landing_path"] or "",
        d["exit_path"] or "",
        d["version"],
    )


def _transition_json_row(d: dict[str, Any]) -> Row:
    return (
        d["site_id"],
        d["transition_id"],
        d["journey_id"],
        d["session_id"],
        d["kind"],
        d["from_phase"] or "",
        d["to_phase"],
        d["furthest_phase"],
        _at(d["at"]),
        d["seconds_in_previous_phase"],
        d["event_id"] or "",
        d["event_name"] or "",
        d["channel"] or "",
        d.get("device") or "",
        d.get("segment") or "",
        d["touchpoint"] or "",
    )


def _signal_json_row(d: dict[str, Any]) -> Row:
    return (
        d["site_id"],
        d["signal_id"],
        d["journey_id"],
        d["kind"],
        d["phase"],
        _at(d["at"]),
        d["event_id"] or "",
        orjson.dumps(d.get("details") or {}).decode(),
    )


def _identity_json_row(d: dict[str, Any]) -> Row:
    return (
        d["site_id"],
        d["link_id"],
        d["previous_id"],
        d["customer_id"],
        d["kind"],
        _at(d["at"]),
        d["event_id"],
    )


def _dead_letter_json_row(d: dict[str, Any]) -> Row:
    return (
        d["site_id"] or "",
        d["reason"],
        d["stage"],
        d["message"],
        d["payload"],
        _at(d["received_at"]),
    )


def _event_row(event: Event) -> Row:
    page = event.context.page
    campaign = event.context.campaign
    return (
        event.site_id,
        event.event_id,
        event.type.value,
        event.event or "",
        event.anonymous_id or "",
        event.user_id or "",
        _ms(event.timestamp),
        _maybe_ms(event.original_timestamp),
        _maybe_ms(event.sent_at),
        _ms(event.received_at),
        event.channel,
        event.device,
        event.browser,
        event.is_bot,
        page.url or "",
        page.path or "",
        page.title or "",
        page.referrer or "",
        campaign.source or "",
        campaign.medium or "",
        campaign.name or "",
        campaign.term or "",
        campaign.content or "",
        event.context.user_agent or "",
        event.context.locale or "",
        event.context.library or "",
        orjson.dumps(event.properties).decode(),
        orjson.dumps(event.traits).decode(),
    )


def _session_row(session: SessionSnapshot) -> Row:
    return (
        session.site_id,
        session.session_id,
        session.journey_id,
        session.anonymous_id or "",
        session.user_id or "",
        _ms(session.started_at),
        _ms(session.last_event_at),
        session.event_count,
        session.page_views,
        session.conversions,
        session.engaged,
        session.closed,
        session.channel,
        session.landing_path or "",
        session.exit_path or "",
        session.version,
    )


def _transition_row(transition: PhaseTransition) -> Row:
    return (
        transition.site_id,
        transition.transition_id,
        transition.journey_id,
        transition.session_id,
        transition.kind.value,
        transition.from_phase or "",
        transition.to_phase,
        transition.furthest_phase,
        _ms(transition.at),
        transition.seconds_in_previous_phase,
        transition.event_id or "",
        transition.event_name or "",
        transition.channel or "",
        transition.device or "",
        transition.segment or "",
        transition.touchpoint or "",
    )


def _signal_row(signal: Signal) -> Row:
    return (
        signal.site_id,
        signal.signal_id,
        signal.journey_id,
        signal.kind.value,
        signal.phase,
        _ms(signal.at),
        signal.event_id or "",
        orjson.dumps(signal.details).decode(),
    )


def _identity_row(link: IdentityLink) -> Row:
    return (
        link.site_id,
        link.link_id,
        link.previous_id,
        link.customer_id,
        link.kind.value,
        _ms(link.at),
        link.event_id,
    )


def _dead_letter_row(letter: DeadLetter) -> Row:
    return (
        letter.site_id or "",
        letter.reason.value,
        letter.stage,
        letter.message,
        letter.payload,
        _ms(letter.received_at),
    )


MAPPINGS: dict[type[Any], TableMapping] = {
    Event: TableMapping(
        "events",
        (
            "site_id",
            "event_id",
            "type",
            "event",
            "anonymous_id",
            "user_id",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "channel",
            "device",
            "browser",
            "is_bot",
            "page_url",
            "page_path",
            "page_title",
            "referrer",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "user_agent",
            "locale",
            "library",
            "properties",
            "traits",
        ),
        _event_row,
        _event_json_row,
    ),
    SessionSnapshot: TableMapping(
        "sessions",
        (
            "site_id",
            "session_id",
            "journey_id",
            "anonymous_id",
            "user_id",
            "started_at",
            "last_event_at",
            "event_count",
            "page_views",
            "conversions",
            "engaged",
            "closed",
            "channel",
            "landing_path",
            "exit_path",
            "version",
        ),
        _session_row,
        _session_json_row,
    ),
    PhaseTransition: TableMapping(
        "phase_transitions",
        (
            "site_id",
            "transition_id",
            "journey_id",
            "session_id",
            "kind",
            "from_phase",
            "to_phase",
            "furthest_phase",
            "at",
            "seconds_in_previous_phase",
            "event_id",
            "event_name",
            "channel",
            "device",
            "segment",
            "touchpoint",
        ),
        _transition_row,
        _transition_json_row,
    ),
    Signal: TableMapping(
        "signals",
        ("site_id", "signal_id", "journey_id", "kind", "phase", "at", "event_id", "details"),
        _signal_row,
        _signal_json_row,
    ),
    IdentityLink: TableMapping(
        "identities",
        ("site_id", "link_id", "previous_id", "customer_id", "kind", "at", "event_id"),
        _identity_row,
        _identity_json_row,
    ),
    DeadLetter: TableMapping(
        "dead_letters",
        ("site_id", "reason", "stage", "message", "payload", "received_at"),
        _dead_letter_row,
        _dead_letter_json_row,
    ),
}


def mapping_for(record: Record) -> TableMapping:
    return MAPPINGS[type(record)]
