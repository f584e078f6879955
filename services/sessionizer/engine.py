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
from services.sessionizer.rules import JourneyRules


class JourneyEngine:
    """Both stages over one ordered stream: the embedded pipeline, and the reference that the
    Kafka stages (`routing`) must match for a single events partition.

    Because every journey of the stream is here, a login merges the anonymous history at once.
    """

    def __init__(self, rules: JourneyRules) -> None:
        self.identities = IdentityResolver()
        self.journeys = JourneyTracker(rules)

    def process(self, event: Event) -> list[SessionizerOutput]:
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
        for one in ids:
            self.identities.forget(site_id, one)
            self.journeys.forget(site_id, one)

    def pass_time(self, now: datetime) -> list[SessionizerOutput]:
        return self.journeys.pass_time(now)

    @property
    def active_journeys(self) -> int:
        return len(self.journeys)

    def export_state(self) -> dict[str, Any]:
        return {
            "identities": self.identities.export_state(),
            "journeys": self.journeys.export_state(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.identities.restore_state(state["identities"])
        self.journeys.restore_state(state["journeys"])
