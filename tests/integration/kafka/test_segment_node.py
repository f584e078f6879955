"""Segment's Node library (`@segment/analytics-node`, pinned in tests/integration/browser/sdks),
unmodified, pointed at a collector process: identify, track and group arrive as they were sent."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from contracts.settings import Settings
from tests.support.browser import SDKS, events_of, sdk_bundles
from tests.support.pipeline import WRITE_KEY
from tests.support.processes import collector


async def test_analytics_node_delivers_identify_track_and_group(
    settings: Settings, tmp_path: Path
) -> None:
    sdk_bundles()  # installs the pinned packages
    anonymous_id = f"node-{uuid.uuid4().hex[:8]}"
    with collector(settings, tmp_path) as base:
        sent = subprocess.run(
            ["node", str(SDKS / "node" / "send.mjs"), base, WRITE_KEY, anonymous_id],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        events = await events_of(settings, anonymous_id, 3)
    by_type = {e.type.value: e for e in events}
    assert set(by_type) == {"identify", "track", "group"}
    assert by_type["identify"].user_id == "erik" and by_type["identify"].traits == {"plan": "pro"}
    order = by_type["track"]
    assert (order.event, order.properties["revenue"]) == ("Order Completed", 120)
    assert (by_type["group"].group_id, by_type["group"].traits) == ("acme", {"employees": 40})
    assert all(e.context.library and e.context.library.startswith("@segment/analytics-node")
               for e in events)  # fmt: skip
