"""docs/configuration.md is where operators look up a setting; every setting must be in it."""

from __future__ import annotations

from pathlib import Path

from contracts.settings import ENV_PREFIX, Settings

CONFIGURATION = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    variables = {
        "PORT" if name == "port" else f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
    }
    missing = sorted(v for v in variables if f"| `{v}` |" not in CONFIGURATION)
    assert missing == []
