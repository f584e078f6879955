"""Records from the topics as warehouse rows, table by table.

The columns named here must exist in the migrations' DDL (tests/integration checks it against
the migrated schema); the DDL stays the one definition of each column's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from klantreis.events import DeadLetter, Event
from klantreis.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal

Row = tuple[Any, ...]
Record = Event | SessionSnapshot | PhaseTransition | Signal | IdentityLink | DeadLetter


@dataclass(frozen=True)
class TableMapping:
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Any], Row]


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
        event.timestamp,
        event.original_timestamp,
        event.sent_at,
        event.received_at,
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
        session.started_at,
        session.last_event_at,
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
        transition.at,
        transition.seconds_in_previous_phase,
        transition.event_id or "",
        transition.event_name or "",
        transition.channel or "",
        transition.device or "",
        transition.touchpoint or "",
    )


def _signal_row(signal: Signal) -> Row:
    return (
        signal.site_id,
        signal.signal_id,
        signal.journey_id,
        signal.kind.value,
        signal.phase,
        signal.at,
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
        link.at,
        link.event_id,
    )


def _dead_letter_row(letter: DeadLetter) -> Row:
    return (
        letter.site_id or "",
        letter.reason.value,
        letter.stage,
        letter.message,
        letter.payload,
        letter.received_at,
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
            "touchpoint",
        ),
        _transition_row,
    ),
    Signal: TableMapping(
        "signals",
        ("site_id", "signal_id", "journey_id", "kind", "phase", "at", "event_id", "details"),
        _signal_row,
    ),
    IdentityLink: TableMapping(
        "identities",
        ("site_id", "link_id", "previous_id", "customer_id", "kind", "at", "event_id"),
        _identity_row,
    ),
    DeadLetter: TableMapping(
        "dead_letters",
        ("site_id", "reason", "stage", "message", "payload", "received_at"),
        _dead_letter_row,
    ),
}


def mapping_for(record: Record) -> TableMapping:
    return MAPPINGS[type(record)]
