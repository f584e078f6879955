"""A record's warehouse row is the same whether built from the record or from its JSON, which is
how the metrics worker builds it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from klantreis.events import DeadLetter, DeadLetterReason, Event
from klantreis.phases import load_phase_model
from klantreis.simulator import collected_events
from services.metrics.rows import MAPPINGS, mapping_for
from services.sessionizer.core import JourneyEngine, JourneyRules
from tests.unit.factories import make_event

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def records() -> list[object]:
    events = collected_events(seed=3, visitors=150, days=20, now=NOW)
    engine = JourneyEngine(JourneyRules(load_phase_model("default")))
    found: list[object] = list(events)
    for event in events:
        found += engine.process(event)
    full = make_event("track", "Order Completed", user_id="c1", revenue=12.5, items=[1, 2])
    found.append(full.model_copy(update={"traits": {"plan": "gold"}, "is_bot": True}))
    found.append(
        DeadLetter(
            site_id=None,
            reason=DeadLetterReason.LATE_EVENT,
            message="late",
            payload="{}",
            stage="sessionizer",
            received_at=NOW,
        )  # fmt: skip
    )
    return found


def test_rows_from_json_equal_rows_from_records_for_every_record_type() -> None:
    seen = set()
    for record in records():
        mapping = mapping_for(record)  # type: ignore[arg-type]
        from_json = mapping.from_json(orjson.loads(record.to_bytes()))  # type: ignore[attr-defined]
        assert from_json == mapping.to_row(record), type(record).__name__
        seen.add(type(record))
    assert seen == set(MAPPINGS)


def test_events_written_without_their_defaults_get_the_models_defaults() -> None:
    event = make_event("page")
    raw = orjson.loads(event.model_dump_json(exclude_defaults=True))
    assert "device" not in raw and "properties" not in raw and "context" not in raw
    assert MAPPINGS[Event].from_json(raw) == MAPPINGS[Event].to_row(event)
