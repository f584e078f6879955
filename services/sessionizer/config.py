"""The sessionizer's rules from the settings: the one place the pure stages meet the environment."""

from __future__ import annotations

from datetime import timedelta

from contracts.settings import Settings
from services.sessionizer.rules import JourneyRules


def journey_rules(settings: Settings) -> JourneyRules:
    return JourneyRules(
        model=settings.phase_model_loaded,
        session_timeout=timedelta(minutes=settings.session_timeout_minutes),
        max_session=timedelta(hours=settings.max_session_hours),
        allowed_lateness=timedelta(minutes=settings.allowed_lateness_minutes),
        reorder_window=timedelta(seconds=settings.reorder_seconds),
    )
