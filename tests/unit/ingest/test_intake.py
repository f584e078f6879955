from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from contracts.events import DeadLetterReason, correct_clock_skew
from services.ingest.intake import (
    MAX_DEPTH,
    Intake,
    RequestRefused,
    check_batch_size,
    decode_body,
    intake,
    nesting_depth,
    without_addresses,
)

RECEIVED = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def accept(*items: Any, max_event_bytes: int = 32 * 1024) -> Intake:
    return intake(list(items), "shop", RECEIVED, max_event_bytes)


def only_rejection(*items: Any) -> str:
    result = accept(*items)
    assert not result.events
    assert len(result.rejections) == 1
    return result.rejections[0].message


def test_a_valid_page_view_becomes_an_enriched_event() -> None:
    result = accept({"type": "page", "anonymous_id": "a1", "name": "Home"})
    (event,) = result.events
    assert event.site_id == "shop"
    assert event.event == "Home"
    assert event.timestamp == RECEIVED  # no client clock: the server's
    assert event.received_at == RECEIVED
    assert event.timestamp.tzinfo is not None


def test_client_clock_skew_is_corrected_by_the_sent_at_offset() -> None:
    # The client's clock runs two hours fast; the event happened 10 s before sending.
    result = accept(
        {
            "type": "page",
            "anonymous_id": "a1",
            "timestamp": "2026-05-04T13:59:50+00:00",
            "sent_at": "2026-05-04T14:00:00+00:00",
        }
    )
    (event,) = result.events
    assert event.timestamp == RECEIVED - timedelta(seconds=10)
    assert event.original_timestamp == datetime(2026, 5, 4, 13, 59, 50, tzinfo=UTC)


def test_a_request_that_only_travelled_keeps_the_clients_times_and_their_order() -> None:
    """Two requests of one page: the first, a page view, held up 3 s by its CORS preflight; the
    second, sent 1 s after it with the next event, arrived at once. Reading each delay as a
    wrong clock put the page view after the event that followed it."""
    page_view = accept({"type": "page", "anonymous_id": "a1", "timestamp": "2026-05-04T11:59:50Z",
                        "sent_at": "2026-05-04T11:59:57Z"}).events[0]  # fmt: skip
    product = accept({"type": "track", "event": "Product Viewed", "anonymous_id": "a1",
                      "timestamp": "2026-05-04T11:59:59Z",
                      "sent_at": "2026-05-04T11:59:59.900Z"}).events[0]  # fmt: skip
    assert page_view.timestamp == datetime(2026, 5, 4, 11, 59, 50, tzinfo=UTC)
    assert page_view.timestamp < product.timestamp


def test_times_in_any_offset_become_utc_on_the_event_and_in_kafka() -> None:
    result = accept(
        {"type": "page", "anonymous_id": "a1", "timestamp": "2026-05-04T13:59:50+02:00"}
    )
    (event,) = result.events
    assert event.original_timestamp == datetime(2026, 5, 4, 11, 59, 50, tzinfo=UTC)
    assert event.original_timestamp is not None and event.original_timestamp.tzinfo is UTC
    decoded = type(event).from_bytes(event.to_bytes())
    assert b'"original_timestamp":"2026-05-04T11:59:50Z"' in event.to_bytes()
    assert all(t.tzinfo is UTC for t in (decoded.timestamp, decoded.received_at))


def test_a_time_that_leaves_the_calendar_in_utc_is_refused_not_a_crash() -> None:
    message = only_rejection(
        {"type": "page", "anonymous_id": "a1", "timestamp": "0001-01-01T00:00:00+01:00"}
    )
    assert "timestamp" in message and "range" in message


def test_a_skew_correction_beyond_the_calendar_is_refused_not_a_crash() -> None:
    message = only_rejection(
        {
            "type": "page",
            "anonymous_id": "a1",
            "timestamp": "1051-01-01T00:00:00Z",
            "sent_at": "3077-01-01T00:00:00Z",
        }
    )
    assert "range of dates" in message


def test_an_event_before_1970_is_refused() -> None:
    """Year 1 once passed and crashed the sessionizer: its watermark lies minutes earlier."""
    message = only_rejection(
        {"type": "page", "anonymous_id": "a1", "timestamp": "0001-01-01T00:05:00Z"}
    )
    assert message == "timestamp: 0001-01-01T00:05:00+00:00 is before 1970-01-01"
    epoch = {"type": "page", "anonymous_id": "a1", "timestamp": "1970-01-01T00:00:00Z"}
    assert accept(epoch).events


def test_clock_skew_without_sent_at_trusts_the_timestamp() -> None:
    ts = RECEIVED - timedelta(days=3)
    assert correct_clock_skew(ts, None, RECEIVED) == ts
    assert correct_clock_skew(None, None, RECEIVED) == RECEIVED


def test_an_event_needs_an_anonymous_or_user_id() -> None:
    assert "anonymous_id or user_id" in only_rejection({"type": "page"})


def test_a_track_needs_its_event_name() -> None:
    assert "needs `event`" in only_rejection({"type": "track", "anonymous_id": "a"})


def test_an_alias_needs_previous_and_user_id() -> None:
    message = only_rejection({"type": "alias", "anonymous_id": "a", "user_id": "u"})
    assert "previous_id" in message


@pytest.mark.parametrize("placeholder", ["null", "undefined", "anonymous", "0", "  "])
def test_placeholder_ids_are_refused(placeholder: str) -> None:
    message = only_rejection({"type": "page", "user_id": placeholder})
    assert message.startswith("user_id:")


def test_a_naive_timestamp_is_refused_rather_than_guessed() -> None:
    message = only_rejection(
        {"type": "page", "anonymous_id": "a", "timestamp": "2026-05-04T12:00:00"}
    )
    assert message == "timestamp: Input should have timezone info"


def test_a_camel_case_field_gets_a_hint() -> None:
    message = only_rejection({"type": "page", "anonymousId": "a"})
    assert "anonymousId" in message and "did you mean anonymous_id?" in message


def test_an_event_far_in_the_future_is_refused() -> None:
    message = only_rejection(
        {"type": "page", "anonymous_id": "a", "timestamp": "2026-05-07T12:00:00Z"}
    )
    assert "more than a day after" in message


def test_an_oversized_event_is_a_size_violation() -> None:
    result = accept(
        {"type": "page", "anonymous_id": "a", "properties": {"blob": "x" * 2000}},
        max_event_bytes=1024,
    )
    assert result.rejections[0].reason is DeadLetterReason.SIZE_VIOLATION
    assert result.dead_letters[0].reason is DeadLetterReason.SIZE_VIOLATION


def test_a_batch_keeps_the_valid_events_and_reports_the_invalid_by_index() -> None:
    result = accept(
        {"type": "page", "anonymous_id": "a"},
        {"type": "track", "anonymous_id": "a"},
        "not an object",
        {"type": "track", "event": "Product Viewed", "anonymous_id": "a"},
    )
    assert [e.event for e in result.events] == [None, "Product Viewed"]
    assert [r.index for r in result.rejections] == [1, 2]
    assert all(letter.site_id == "shop" for letter in result.dead_letters)
    assert orjson.loads(result.dead_letters[0].payload) == {"type": "track", "anonymous_id": "a"}


def test_the_visitor_ip_never_reaches_the_event() -> None:
    (event,) = accept(
        {"type": "page", "anonymous_id": "a", "context": {"ip": "203.0.113.9"}}
    ).events
    assert "203.0.113.9" not in event.to_bytes().decode()


def test_utm_parameters_are_read_from_the_page_url() -> None:
    url = "https://shop.example/p/1?utm_source=google&utm_medium=cpc&utm_campaign=sale"
    (event,) = accept(
        {"type": "page", "anonymous_id": "a", "context": {"page": {"url": url}}}
    ).events
    campaign = event.context.campaign
    assert (campaign.source, campaign.medium, campaign.name) == ("google", "cpc", "sale")


def test_a_missing_event_id_is_derived_so_a_retry_is_the_same_event() -> None:
    body = {"type": "page", "anonymous_id": "a", "timestamp": "2026-05-04T11:00:00Z"}
    first = accept({**body, "sent_at": "2026-05-04T11:00:01Z"}).events[0]
    retry = accept({**body, "sent_at": "2026-05-04T11:05:00Z"}).events[0]
    other = accept({**body, "timestamp": "2026-05-04T11:00:02Z"}).events[0]
    assert first.event_id == retry.event_id
    assert first.event_id != other.event_id
    # the same content, its keys in another order: still the same event
    reordered = accept({"sent_at": "2026-05-04T11:09:00Z", **dict(reversed(body.items()))})
    assert reordered.events[0].event_id == first.event_id


def test_without_a_timestamp_identical_events_stay_distinct() -> None:
    body = {"type": "page", "anonymous_id": "a"}
    assert accept(body).events[0].event_id != accept(body).events[0].event_id


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "empty_body"),
        (b"{nope", 400, "malformed_json"),
        (b"[]", 400, "empty_batch"),
        (b"42", 400, "not_an_event"),
        (orjson.dumps([{"type": "page"}] * 3), 413, "too_many_events"),
    ],
)
def test_unreadable_bodies_are_refused_whole(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        check_batch_size(len(decode_body(raw)), max_events=2)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_a_single_object_and_an_array_both_decode() -> None:
    assert decode_body(b'{"type": "page"}') == [{"type": "page"}]
    assert len(decode_body(b'[{"type": "page"}, {"type": "page"}]')) == 2


@pytest.mark.parametrize(
    "sent",
    [1777629600, 1777629600000, "2026-05-01T10:00Z", "2026-05-01 11:00:00+01:00"],
)
def test_a_time_in_unix_seconds_or_milliseconds_or_any_iso_form_is_the_same_time(
    sent: object,
) -> None:
    event = {"type": "page", "anonymous_id": "a1", "timestamp": sent}
    assert accept(event).events[0].original_timestamp == datetime(2026, 5, 1, 10, tzinfo=UTC)


def test_a_time_that_is_no_time_is_refused_by_name() -> None:
    message = only_rejection({"type": "page", "anonymous_id": "a1", "timestamp": "yesterday"})
    assert message.startswith("timestamp:") and "ISO 8601" in message


def test_a_refused_event_is_kept_without_the_addresses_in_it() -> None:
    refused = {
        "type": "page",  # no id: refused
        "context": {"ip": "203.0.113.77", "page": {"title": "from 2001:db8::77"}},
        "properties": {"forwarded": "198.51.100.9, ::ffff:192.0.2.1", "at": "10:00:00"},
    }
    (letter,) = accept(refused).dead_letters
    assert orjson.loads(letter.payload) == {
        "type": "page",
        "context": {"ip": "[ip]", "page": {"title": "from [ip]"}},
        "properties": {"forwarded": "[ip], [ip]", "at": "10:00:00"},
    }


@pytest.mark.parametrize(
    "text", ["v1.2.3", "1.2.3.4.5", "999.1.1.1", "12:34:56", "2026-12-01T10:00:00Z", "dead:beef"]
)
def test_what_only_looks_like_an_address_is_kept(text: str) -> None:
    assert without_addresses(text.encode()) == text.encode()


def test_nesting_is_counted_without_recursion_and_refused_beyond_the_limit() -> None:
    deep: object = "leaf"
    for _ in range(5000):  # far past Python's recursion limit
        deep = [deep]
    assert nesting_depth(deep) == MAX_DEPTH + 1  # it stops counting one past the limit
    allowed: object = "leaf"
    for _ in range(MAX_DEPTH - 2):  # with the event and its properties: the limit exactly
        allowed = [allowed]
    assert accept({"type": "page", "anonymous_id": "a", "properties": {"x": allowed}}).events
    message = only_rejection({"type": "page", "anonymous_id": "a", "properties": {"x": deep}})
    assert message == f"properties: nests objects and arrays more than {MAX_DEPTH} levels deep"


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"revenue": 1e308}, "properties.revenue"),
        ({"revenue": -5000}, "properties.revenue"),
        ({"revenue": "abc"}, "properties.revenue"),
        ({"revenue": "49.99"}, "properties.revenue"),
        ({"revenue": True}, "properties.revenue"),
        ({"total": float("inf")}, "properties.total"),
        ({"quantity": 1.5}, "properties.quantity"),
        ({"score": 11}, "properties.score"),
        ({"products": [{"price": 10}, {"price": -1}]}, "properties.products.1.price"),
    ],
)
def test_numbers_that_would_corrupt_a_total_are_refused_naming_the_field(
    properties: dict[str, Any], field: str
) -> None:
    order = {"type": "track", "event": "Order Completed", "anonymous_id": "a"}
    assert only_rejection({**order, "properties": properties}).startswith(f"{field}: ")


def test_numbers_within_their_bounds_are_accepted() -> None:
    order = {"type": "track", "event": "Order Completed", "anonymous_id": "a",
             "properties": {"revenue": 49.99, "quantity": 2, "score": 9, "discount": 0,
                            "products": [{"price": 24.995, "quantity": 2}]}}  # fmt: skip
    assert accept(order).events
