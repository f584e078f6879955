from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

from contracts.events import Event
from services.ingest.intake import intake
from services.ingest.pixels import pixel_to_native, snowplow_to_native

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def one(native: object) -> Event:
    result = intake([native], "shop", NOW, 32 * 1024)
    assert result.rejections == [], result.rejections
    (event,) = result.events
    return event


def test_an_email_open_pixel_is_a_track_with_its_properties() -> None:
    event = one(
        pixel_to_native(
            {"key": "k", "event": "Email Opened", "user_id": "cust-1", "p.campaign": "spring",
             "utm_source": "newsletter", "utm_medium": "email"}
        )
    )  # fmt: skip
    assert (event.type.value, event.event, event.user_id) == ("track", "Email Opened", "cust-1")
    assert event.properties == {"campaign": "spring"}
    assert event.channel == "email"


def test_a_pixel_without_an_event_is_a_page_view() -> None:
    event = one(pixel_to_native({"anonymous_id": "a", "url": "https://shop.example/x"}))
    assert (event.type.value, event.context.page.url) == ("page", "https://shop.example/x")


def test_a_snowplow_page_view() -> None:
    event = one(
        snowplow_to_native(
            {"e": "pv", "aid": "k", "eid": "e-1", "duid": "d-1", "uid": "u-1",
             "url": "https://shop.example/p", "refr": "https://www.google.com/", "page": "P",
             "dtm": "1777896000000", "stm": "1777896060000", "tv": "py-1.1.0"}
        )
    )  # fmt: skip
    assert (event.type.value, event.event, event.event_id) == ("page", "P", "e-1")
    assert (event.anonymous_id, event.user_id) == ("d-1", "u-1")
    assert event.channel == "organic_search"
    assert event.timestamp == NOW - (datetime(2026, 5, 4, 12, 1, tzinfo=UTC) - datetime(
        2026, 5, 4, 12, 0, tzinfo=UTC))  # fmt: skip
    assert event.context.library == "py-1.1.0"


def test_a_snowplow_structured_event_is_a_track_named_by_its_action() -> None:
    params = {"e": "se", "duid": "d", "se_ca": "shop", "se_ac": "Product Added", "se_va": "2"}
    event = one(snowplow_to_native(params))
    assert (event.event, event.properties) == ("Product Added", {"category": "shop", "value": 2})


def test_a_snowplow_self_describing_event_is_named_by_its_schema() -> None:
    envelope = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                "data": {"schema": "iglu:com.acme/product_viewed/jsonschema/1-0-0",
                         "data": {"sku": "tv-1"}}}  # fmt: skip
    encoded = base64.urlsafe_b64encode(orjson.dumps(envelope)).decode().rstrip("=")
    event = one(snowplow_to_native({"e": "ue", "duid": "d", "ue_px": encoded}))
    assert (event.event, event.properties) == ("Product Viewed", {"sku": "tv-1"})


def test_an_unknown_snowplow_event_type_is_refused_by_name() -> None:
    result = intake([snowplow_to_native({"e": "zz", "duid": "d"})], "shop", NOW, 32 * 1024)
    assert "snowplow:zz" in result.rejections[0].message


def test_amounts_in_a_query_string_are_read_as_numbers() -> None:
    event = one(pixel_to_native({"event": "Order Completed", "user_id": "u", "p.revenue": "12.5",
                                 "p.quantity": "2", "p.coupon": "10"}))  # fmt: skip
    assert event.properties == {"revenue": 12.5, "quantity": 2, "coupon": "10"}
    order = snowplow_to_native({"e": "tr", "duid": "d", "tr_id": "o-1", "tr_tt": "-5000"})
    assert (
        intake([order], "shop", NOW, 32 * 1024)
        .rejections[0]
        .message.startswith("properties.revenue: -5000 is outside")
    )
