"""README's configuration table is where operators look; every setting must be in it."""

from __future__ import annotations

from pathlib import Path

from contracts.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    variables = {
        "PORT" if name == "port" else f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
    }
    missing = sorted(v for v in variables if f"| `{v}` |" not in README)
    assert missing == []
