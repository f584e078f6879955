"""Fault 5 in its short form: `bench/soak.py` for 20 s, one site sending ten times its quota
(the 10-minute soak is the bench's default). Every event answered 2xx is stored once, the hot
site is throttled with 429s, the other sites are never refused, and no service exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_a_short_soak_with_a_hot_site_loses_and_doubles_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--minutes", "0.33", "--baseline-minutes", "0", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nshort soak: {result}")
    assert result["acknowledged"] > 0
    assert (result["missing"], result["stored_twice"]) == (0, 0)
    assert result["hot_statuses"].get("429", 0) > 0
    assert set(result["normal_statuses"]) == {"200"}
    assert result["exited"] == {}
