"""The parsers facing the internet take anything: they accept, or refuse with a reason, and never
raise anything else."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.intake import RequestRefused, check_batch_size, decode_body, intake
from services.ingest.pixels import pixel_to_native, snowplow_to_native
from services.ingest.segment import messages_of, to_native

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
KEYS = st.sampled_from(
    ["e", "aid", "eid", "duid", "uid", "dtm", "stm", "ttm", "url", "refr", "page", "ua", "se_ac",
     "se_ca", "se_va", "ue_px", "ue_pr", "tr_tt", "type", "event", "name", "anonymous_id",
     "user_id", "event_id", "timestamp", "p.x", "t.y", "utm_source"]
) | st.text(max_size=8)  # fmt: skip
PARAMS = st.dictionaries(KEYS, st.text(max_size=40), max_size=12)
SEGMENT_FIELDS = ["type", "event", "name", "userId", "anonymousId", "previousId", "messageId",
                  "timestamp", "sentAt", "properties", "traits", "context", "writeKey"]  # fmt: skip
NATIVE_FIELDS = ["type", "event", "name", "anonymous_id", "user_id", "previous_id", "event_id",
                 "timestamp", "sent_at", "properties", "traits", "context"]  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)  # fmt: skip


def refused_or_accepted(items: list[object]) -> None:
    result = intake(items, "shop", NOW, 32 * 1024)
    assert len(result.events) + len(result.rejections) == len(items)
    assert all(rejection.message for rejection in result.rejections)


@settings(max_examples=400, deadline=None)
@given(PARAMS)
def test_pixel_parameters_never_break_the_collector(params: dict[str, str]) -> None:
    refused_or_accepted([pixel_to_native(params), snowplow_to_native(params)])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | JSON.map(lambda value: repr(value).encode()))
def test_any_body_is_events_or_a_precise_refusal(raw: bytes) -> None:
    try:
        items = decode_body(raw)
        check_batch_size(len(items), max_events=50)
    except RequestRefused as refusal:
        assert 400 <= refusal.status < 500 and refusal.message
        return
    refused_or_accepted(items)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from(["track", "page", "identify", "alias", "batch", "screen"]))
def test_any_segment_body_is_events_or_refusals(body: object, call: str) -> None:
    refused_or_accepted([to_native(message) for message in messages_of(body, call)])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=12))
def test_any_json_value_in_any_snowplow_field_is_an_event_or_a_refusal(
    params: dict[str, object],
) -> None:
    refused_or_accepted([snowplow_to_native(params)])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SEGMENT_FIELDS) | st.text(max_size=8), JSON, max_size=10))
def test_any_json_value_in_any_segment_field_is_an_event_or_a_refusal(
    message: dict[str, object],
) -> None:
    batch = {"batch": [message], "context": {"ip": "203.0.113.1"}}
    refused_or_accepted([to_native(m) for m in messages_of(batch, "batch")])
    refused_or_accepted([to_native(message)])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NATIVE_FIELDS) | st.text(max_size=8), JSON, max_size=10))
def test_any_json_value_in_any_native_field_is_an_event_or_a_refusal(
    event: dict[str, object],
) -> None:
    refused_or_accepted([event])
