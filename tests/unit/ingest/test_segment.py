from __future__ import annotations

from datetime import UTC, datetime

from contracts.events import Event
from services.ingest.intake import intake
from services.ingest.segment import messages_of, to_native

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def accept(body: object, call: str) -> list[Event]:
    items = [to_native(m) for m in messages_of(body, call)]
    result = intake(items, "shop", NOW, 32 * 1024)
    assert result.rejections == []
    return list(result.events)


def test_a_track_call_becomes_a_native_track() -> None:
    (event,) = accept(
        {
            "messageId": "m-1",
            "userId": "u-1",
            "anonymousId": "a-1",
            "event": "Product Added",
            "properties": {"sku": "s-1", "price": 9.5},
            "timestamp": "2026-05-04T11:59:00Z",
            "context": {
                "library": {"name": "analytics-python", "version": "2.4.0"},
                "page": {"url": "https://shop.example/p?utm_source=google&utm_medium=cpc"},
                "userAgent": "Mozilla/5.0",
                "ip": "203.0.113.5",
            },
            "integrations": {"All": True},
        },
        "track",
    )
    assert (event.event_id, event.type.value, event.event) == ("m-1", "track", "Product Added")
    assert (event.user_id, event.anonymous_id) == ("u-1", "a-1")
    assert event.properties == {"sku": "s-1", "price": 9.5}
    assert event.context.library == "analytics-python/2.4.0"
    assert event.context.user_agent == "Mozilla/5.0"
    assert event.channel == "paid_search"


def test_a_batch_shares_its_sent_at_and_context_with_every_message() -> None:
    events = accept(
        {
            "sentAt": "2026-05-04T14:00:00Z",  # the client's clock is two hours fast
            "context": {"locale": "nl-NL"},
            "batch": [
                {"type": "page", "name": "Home", "anonymousId": "a",
                 "timestamp": "2026-05-04T13:59:00Z"},
                {"type": "identify", "anonymousId": "a", "userId": "u", "traits": {"vip": True},
                 "timestamp": "2026-05-04T13:59:30Z", "context": {"locale": "en-GB"}},
            ],
        },
        "batch",
    )  # fmt: skip
    page, identify = events
    assert page.event == "Home" and page.context.locale == "nl-NL"
    assert page.timestamp == datetime(2026, 5, 4, 11, 59, tzinfo=UTC)  # skew corrected
    assert identify.traits == {"vip": True} and identify.context.locale == "en-GB"


def test_screen_is_a_page_view_and_numeric_ids_are_strings() -> None:
    (event,) = accept({"type": "screen", "name": "Cart", "userId": 42}, "screen")
    assert (event.type.value, event.event, event.user_id) == ("page", "Cart", "42")


def test_an_alias_keeps_the_previous_id() -> None:
    (event,) = accept({"previousId": "old", "userId": "new"}, "alias")
    assert (event.type.value, event.previous_id, event.user_id) == ("alias", "old", "new")


def test_a_group_call_is_kept_with_the_account_and_its_traits() -> None:
    (event,) = accept(
        {"type": "group", "userId": "u-1", "groupId": "acme", "traits": {"plan": "enterprise"}},
        "group",
    )
    assert (event.type.value, event.group_id, event.traits) == (
        "group",
        "acme",
        {"plan": "enterprise"},
    )
    refused = intake([to_native({"type": "group", "userId": "u"})], "shop", NOW, 32 * 1024)
    assert refused.rejections[0].message.startswith("group_id:")


def test_empty_string_ids_are_absent_as_segment_treats_them() -> None:
    (event,) = accept({"type": "track", "event": "Viewed", "userId": "", "anonymousId": "a-1"},
                      "track")  # fmt: skip
    assert (event.user_id, event.anonymous_id) == (None, "a-1")


def test_original_timestamp_stands_in_for_a_missing_timestamp() -> None:
    (event,) = accept(
        {"type": "page", "anonymousId": "a-1", "originalTimestamp": "2026-05-04T11:00:00Z"},
        "page",
    )
    assert event.timestamp == datetime(2026, 5, 4, 11, 0, tzinfo=UTC)


def test_identify_traits_in_the_context_and_a_page_category_are_kept() -> None:
    (identify,) = accept(
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"},
         "context": {"traits": {"email": "u@example.com", "plan": "free"}}},
        "identify",
    )  # fmt: skip
    assert identify.traits == {"email": "u@example.com", "plan": "pro"}
    (page,) = accept({"type": "page", "anonymousId": "a", "category": "Docs", "name": "API"},
                     "page")  # fmt: skip
    assert page.properties == {"category": "Docs"} and page.event == "API"
    # Segment's integrations map and context fields klantreis does not keep are ignored.
    (track,) = accept(
        {"type": "track", "event": "E", "anonymousId": "a", "integrations": {"All": False},
         "context": {"device": {"id": "x"}, "library": {"name": "analytics.js"}}},
        "track",
    )  # fmt: skip
    assert track.context.library == "analytics.js"
