"""Both stages over one ordered stream: the embedded pipeline, and the reference that the Kafka
stages (`stages`) must match for a single events partition. Pure.

The same events in the same order give the same outputs with the same ids, which is what makes
a replay after a crash harmless downstream. State is plain data (`export_state`/`restore_state`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from contracts.events import Event, EventType
from contracts.records import SessionizerOutput
from services.sessionizer.identities import IdentityResolver
from services.sessionizer.journeys import JourneyTracker
from services.sessionizer.reorder import ReorderBuffer
from services.sessionizer.rules import JourneyRules


class JourneyEngine:
    """Both stages over one ordered stream: the embedded pipeline, and the reference that the
    Kafka stages (`routing`) must match for a single events partition.

    Because every journey of the stream is here, a login merges the anonymous history at once.
    Events are first put back in time order (`reorder`), as the identity stage does.
    """

    def __init__(self, rules: JourneyRules) -> None:
        self.hold = ReorderBuffer(rules.reorder_window)
        self.identities = IdentityResolver()
        self.journeys = JourneyTracker(rules)

    def process(self, event: Event) -> list[SessionizerOutput]:
        """Hold `event`; the outputs of the events this makes due, in time order."""
        return self._process_all(self.hold.add(event))

    def _process_all(self, events: list[Event]) -> list[SessionizerOutput]:
        return [output for event in events for output in self._process(event)]

    def _process(self, event: Event) -> list[SessionizerOutput]:
        resolution = self.identities.resolve(event)
        if resolution.journey_id is None:
            return []
        outputs: list[SessionizerOutput] = []
        if resolution.link is not None:
            outputs.append(resolution.link)
        if resolution.merge_from is not None:
            outputs.extend(
                self.journeys.merge(event.site_id, resolution.merge_from, resolution.journey_id)
            )
        if event.type is EventType.ALIAS:
            return outputs  # an alias links ids; it is not an interaction of the customer
        outputs.extend(self.journeys.process(event, resolution.journey_id))
        return outputs

    def forget(self, site_id: str, ids: Iterable[str]) -> None:
        """Erase every identity and journey of these ids (a customer and the ids linked to
        them)."""
        self.hold.drop(site_id, ids)
        for one in ids:
            self.identities.forget(site_id, one)
            self.journeys.forget(site_id, one)

    def release_due(self, now: datetime) -> list[SessionizerOutput]:
        """The wall clock is at `now`: the outputs of the held events the hold's window older
        than it."""
        return self._process_all(self.hold.pass_time(now))

    def pass_time(self, now: datetime) -> list[SessionizerOutput]:
        """No event came until `now`: the held events due go, then the clock moves on, no
        further than the oldest event still held."""
        outputs = self.release_due(now)
        oldest_held = self.hold.oldest
        return outputs + self.journeys.pass_time(
            now if oldest_held is None else min(now, oldest_held)
        )

    def drain(self) -> list[SessionizerOutput]:
        """The outputs of every event still held: the end of a finite stream (a replay, a
        simulation, a test)."""
        return self._process_all(self.hold.drain())

    @property
    def active_journeys(self) -> int:
        return len(self.journeys)

    def export_state(self) -> dict[str, Any]:
        return {
            "identities": self.identities.export_state(),
            "journeys": self.journeys.export_state(),
            "hold": self.hold.export_state(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.identities.restore_state(state["identities"])
        self.journeys.restore_state(state["journeys"])
        self.hold.restore_state(state.get("hold") or {})
