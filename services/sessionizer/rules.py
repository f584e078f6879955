"""What the sessionizer's stages are told: the phase model and the time rules of sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from contracts.phases import PhaseModel


@dataclass(frozen=True)
class JourneyRules:
    model: PhaseModel
    session_timeout: timedelta = timedelta(minutes=30)
    max_session: timedelta = timedelta(hours=12)
    allowed_lateness: timedelta = timedelta(minutes=10)
    # How long each stream holds its events to put them back in time order (`reorder`).
    reorder_window: timedelta = timedelta(0)
