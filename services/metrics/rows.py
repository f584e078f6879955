"""Which table each record type goes to, and how: as a row built in Python (native insert) or as
the record's JSON, which ClickHouse reads into the same columns (the metrics worker's way).

The tables and columns come from the record catalogue (`contracts/records.py`) and must exist in
the migrations' DDL (tests/integration/kafka checks it against the migrated schema, and that both
ways store the same); the DDL stays the one definition of each column's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from contracts.events import DeadLetter, Event
from contracts.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal
from contracts.records import CATALOGUE, RecordKind, StoredRecord
from contracts.timecodec import maybe_millis, to_millis

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableMapping:
    """A record type's table (from the catalogue), the row built from a record for the native
    insert, and the fields of the record's JSON the table reads for the JSON insert the metrics
    worker uses, where ClickHouse parses the records as consumed."""

    kind: RecordKind
    to_row: Callable[[Any], Row]

    @property
    def record_type(self) -> type[Any]:
        return self.kind.record_type

    @property
    def table(self) -> str:
        return self.kind.table

    @property
    def columns(self) -> tuple[str, ...]:
        return self.kind.columns

    @property
    def json_fields(self) -> tuple[str, ...]:
        return self.kind.json_fields


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
        to_millis(event.timestamp),
        maybe_millis(event.original_timestamp),
        maybe_millis(event.sent_at),
        to_millis(event.received_at),
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
        event.group_id or "",
    )


def _session_row(session: SessionSnapshot) -> Row:
    return (
        session.site_id,
        session.session_id,
        session.journey_id,
        session.anonymous_id or "",
        session.user_id or "",
        to_millis(session.started_at),
        to_millis(session.last_event_at),
        session.event_count,
        session.page_views,
        session.conversions,
        session.engaged,
        session.closed,
        session.channel,
        session.landing_path or "",
        session.exit_path or "",
        session.version,
        session.journey_number or 0,  # 0: made before numbering (migration 0015)
        session.session_number or 0,
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
        to_millis(transition.at),
        transition.seconds_in_previous_phase,
        transition.event_id or "",
        transition.event_name or "",
        transition.channel or "",
        transition.device or "",
        transition.segment or "",
        transition.touchpoint or "",
        transition.journey_number or 0,
    )


def _signal_row(signal: Signal) -> Row:
    return (
        signal.site_id,
        signal.signal_id,
        signal.journey_id,
        signal.kind.value,
        signal.phase,
        to_millis(signal.at),
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
        to_millis(link.at),
        link.event_id,
    )


def _dead_letter_row(letter: DeadLetter) -> Row:
    return (
        letter.site_id or "",
        letter.reason.value,
        letter.stage,
        letter.message,
        letter.payload,
        to_millis(letter.received_at),
    )


# The row of each record type, in its catalogue columns' order.
_ROW_BUILDERS: dict[type[Any], Callable[[Any], Row]] = {
    Event: _event_row,
    SessionSnapshot: _session_row,
    PhaseTransition: _transition_row,
    Signal: _signal_row,
    IdentityLink: _identity_row,
    DeadLetter: _dead_letter_row,
}
_MAPPINGS = tuple(TableMapping(kind, _ROW_BUILDERS[kind.record_type]) for kind in CATALOGUE)
MAPPINGS: dict[type[Any], TableMapping] = {m.record_type: m for m in _MAPPINGS}


def mapping_for(record: StoredRecord) -> TableMapping:
    return MAPPINGS[type(record)]
