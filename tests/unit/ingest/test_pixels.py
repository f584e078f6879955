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


ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"


def encoded(document: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


def action(
    kind: str, *entities: tuple[str, dict[str, object]], field: str = "cx"
) -> dict[str, str]:
    event = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
             "data": {"schema": f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2",
                      "data": {"type": kind}}}  # fmt: skip
    contexts = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                "data": [{"schema": f"{ECOMMERCE}/{name}/jsonschema/1-0-0", "data": data}
                         for name, data in entities]}  # fmt: skip
    carried = encoded(contexts) if field == "cx" else orjson.dumps(contexts).decode()
    return {"e": "ue", "ue_px": encoded(event), field: carried, "duid": "d-1", "aid": "shop"}


def test_an_ecommerce_transaction_is_an_order_with_its_revenue_and_products() -> None:
    event = one(snowplow_to_native(action(
        "transaction",
        ("product", {"id": "tv-55", "name": "TV", "price": 499, "quantity": 1, "currency": "EUR"}),
        ("transaction", {"transaction_id": "o-1", "revenue": 499, "currency": "EUR",
                         "payment_method": "card", "total_quantity": 1}),
    )))  # fmt: skip
    assert event.event == "Order Completed"
    expected = {"order_id": "o-1", "revenue": 499, "currency": "EUR", "payment_method": "card",
                "products": [{"product_id": "tv-55", "name": "TV", "price": 499, "quantity": 1,
                              "currency": "EUR"}]}  # fmt: skip
    assert {k: v for k, v in event.properties.items() if k != "contexts"} == expected
    assert event.properties["contexts"]["transaction"]["transaction_id"] == "o-1"


def test_cart_actions_and_a_failed_payment_carry_their_entities() -> None:
    added = one(snowplow_to_native(action(
        "add_to_cart", ("product", {"id": "tv-55", "price": 499, "currency": "EUR"}),
        ("cart", {"cart_id": "c-1", "total_value": 499, "currency": "EUR"}), field="co",
    )))  # fmt: skip
    assert added.event == "Product Added"
    assert added.properties["product_id"] == "tv-55" and added.properties["cart_id"] == "c-1"
    failed = one(snowplow_to_native(action(
        "trns_error", ("transaction", {"transaction_id": "o-2", "revenue": 20, "currency": "EUR"}),
        ("transaction_error", {"error_description": "card declined"}),
    )))  # fmt: skip
    assert failed.event == "Payment Failed" and failed.properties["reason"] == "card declined"


def test_legacy_transaction_and_item_events_keep_revenue_and_lines() -> None:
    order = one(snowplow_to_native({"e": "tr", "tr_id": "o-1", "tr_tt": "120.50", "tr_tx": "20",
                                    "tr_sh": "5", "tr_cu": "EUR", "duid": "d-1"}))  # fmt: skip
    assert (order.event, order.properties) == (
        "Order Completed",
        {"order_id": "o-1", "revenue": 120.5, "tax": 20, "shipping": 5, "currency": "EUR"},
    )
    line = one(snowplow_to_native({"e": "ti", "ti_id": "o-1", "ti_sk": "tv-55", "ti_pr": "100",
                                   "ti_qu": "1", "ti_cu": "EUR", "duid": "d-1"}))  # fmt: skip
    assert line.event == "Order Line Item"
    assert line.properties == {"order_id": "o-1", "sku": "tv-55", "price": 100, "quantity": 1,
                               "currency": "EUR"}  # fmt: skip


def test_the_request_gives_the_user_agent_and_page_a_payload_lacks() -> None:
    event = one(snowplow_to_native({"e": "pv", "duid": "d-1"}, "Mozilla/5.0 (X11; Linux)",
                                   "https://shop.example/p"))  # fmt: skip
    assert event.context.user_agent == "Mozilla/5.0 (X11; Linux)"
    assert event.context.page.url == "https://shop.example/p"
    ping = one(snowplow_to_native({"e": "pp", "duid": "d-1", "pp_may": 800, "pp_miy": "0"}))
    assert (ping.event, ping.properties) == ("Page Ping", {"y_min": 0, "y_max": 800})
