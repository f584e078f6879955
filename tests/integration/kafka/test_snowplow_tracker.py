"""Snowplow's own Python tracker, unmodified, with its GET and POST emitters pointed at the
collector: page views, structured and self-describing events arrive in Kafka as the same internal
events the native API makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import httpx
from snowplow_tracker.emitters import Emitter
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from contracts.settings import Settings
from tests.support.pipeline import WRITE_KEY, comparable, read_events
from tests.support.processes import collector

PAGE = "https://shop.example/tv?utm_source=google&utm_medium=cpc"


async def test_snowplow_tracker_events_are_the_same_internal_events(
    settings: Settings, tmp_path: Path
) -> None:
    failures: list[object] = []
    with collector(settings, tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        subject = Subject().set_domain_user_id("device-7").set_user_id("cust-7")
        methods: tuple[Literal["get"], Literal["post"]] = ("get", "post")
        for method in methods:
            emitter = Emitter(
                "127.0.0.1",
                protocol="http",
                port=port,
                method=method,
                batch_size=1,
                on_failure=lambda count, events: failures.append(events),
            )
            tracker = Tracker(f"ns-{method}", emitter, subject=subject, app_id=WRITE_KEY)
            tracker.track(PageView(page_url=PAGE, page_title="TV"))
            tracker.track(StructuredEvent(category="shop", action="Product Added", label=method))
            product = SelfDescribingJson(
                "iglu:com.acme/product_viewed/jsonschema/1-0-0", {"sku": "tv-55"}
            )
            tracker.track(SelfDescribing(event_json=product))
            tracker.flush()
        native: list[dict[str, Any]] = [
            {"type": "page", "name": "TV"},
            {"type": "track", "event": "Product Added",
             "properties": {"category": "shop", "label": "get"}},
            {"type": "track", "event": "Product Viewed", "properties": {"sku": "tv-55"}},
        ]  # fmt: skip
        for body in native:
            body |= {"anonymous_id": "device-7", "user_id": "cust-7"}
            body |= {"context": {"page": {"url": PAGE, "title": "TV"}}}
        native[1]["context"] = {}  # structured events carry no page in this tracker
        native[2]["context"] = {}
        response = httpx.post(f"{base}/v1/events", json=native, auth=(WRITE_KEY, ""))
        assert response.json() == {"accepted": 3}
    assert failures == []

    events = await read_events(settings)
    from_snowplow = [e for e in events if (e.context.library or "").startswith("py-")]
    from_native = [e for e in events if e.context.library is None]
    assert len(from_snowplow) == 6 and len(from_native) == 3
    by_name = {(e.type.value, e.event): comparable(e) for e in from_native}
    for event in from_snowplow:
        expected = dict(by_name[(event.type.value, event.event)])
        if event.event == "Product Added":
            expected["properties"] = {"category": "shop", "label": event.properties["label"]}
        assert comparable(event) == expected
