"""Events that arrive as query parameters: the native GIF pixel and the Snowplow tracker protocol.

A pixel is for places without JavaScript (e-mail opens, no-JS pages); Snowplow's protocol lets
shops with Snowplow trackers send here unchanged, with the app id (`aid`) carrying the write key.
Both are translated into native events and validated like them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from services.ingest.intake import Untranslatable
from services.ingest.schema import AMOUNTS, SCORES

# The smallest transparent 1x1 GIF.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_NATIVE_FIELDS = ("type", "event", "name", "anonymous_id", "user_id", "event_id", "timestamp",
                  "sent_at")  # fmt: skip


def pixel_to_native(params: Mapping[str, str], user_agent: str | None = None) -> dict[str, Any]:
    """`/v1/pixel.gif?key=…&event=Email Opened&user_id=…&p.campaign=…`: `p.` prefixes a
    property, `t.` a trait; `url`, `referrer` and `title` describe the page. `user_agent` is
    the requesting client's: a pixel is loaded by the browser or mail client itself."""
    native: dict[str, Any] = {name: params[name] for name in _NATIVE_FIELDS if name in params}
    native.setdefault("type", "track" if "event" in native else "page")
    properties = {
        k[2:]: _as_number(v) if k[2:] in NUMERIC_PROPERTIES else v
        for k, v in params.items()
        if k.startswith("p.") and len(k) > 2
    }
    traits = {k[2:]: v for k, v in params.items() if k.startswith("t.") and len(k) > 2}
    if properties:
        native["properties"] = properties
    if traits:
        native["traits"] = traits
    page = {
        name: params[key]
        for key, name in (("url", "url"), ("referrer", "referrer"), ("title", "title"))
        if key in params
    }
    campaign = {name: params[f"utm_{key}"] for key, name in
                (("source", "source"), ("medium", "medium"), ("campaign", "name"),
                 ("term", "term"), ("content", "content")) if f"utm_{key}" in params}  # fmt: skip
    context: dict[str, Any] = {}
    if page:
        context["page"] = page
    if campaign:
        context["campaign"] = campaign
    if user_agent:
        context["user_agent"] = user_agent[:1024]
    if context:
        native["context"] = context
    return native


# Properties that are numbers (docs/event-api.md, "Numbers"): a query string carries them as
# text, which is read as a number here; what does not read as one is left for validation.
NUMERIC_PROPERTIES = AMOUNTS | SCORES | {"quantity"}


def _as_number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


def _milliseconds(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return value  # left as it is, so validation names it


def _self_describing(params: Mapping[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The event name (from its schema) and data of a Snowplow self-describing event."""
    raw = params.get("ue_pr")
    if raw is None and "ue_px" in params:
        encoded = params["ue_px"]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, {}
    try:
        envelope = orjson.loads(raw or "")
        inner = envelope["data"]
        schema, data = inner["schema"], inner.get("data", {})
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None, {}
    # iglu:com.acme/product_viewed/jsonschema/1-0-0 -> "Product Viewed"
    name = str(schema).split("/")[1] if "/" in str(schema) else str(schema)
    return name.replace("_", " ").title(), data if isinstance(data, dict) else {"value": data}


# The tracker protocol's fields this translation reads: strings, and for times and amounts also
# JSON numbers (a POST payload is JSON, and some trackers send numbers there).
_SNOWPLOW_TEXT = ("e", "aid", "page", "se_ac", "se_ca", "se_la", "se_pr", "ue_pr", "ue_px",
                  "tr_id", "tr_cu", "eid", "duid", "nuid", "tnuid", "uid", "url", "refr", "tv",
                  "ua", "lang")  # fmt: skip
_SNOWPLOW_NUMBER = ("dtm", "ttm", "stm", "se_va", "tr_tt")


def _mistyped(params: Mapping[str, Any]) -> str | None:
    """The first field of a Snowplow event whose value is of a type the protocol never sends."""
    for name in _SNOWPLOW_TEXT + _SNOWPLOW_NUMBER:
        value = params.get(name)
        if value is None or isinstance(value, str):
            continue
        if (
            name in _SNOWPLOW_NUMBER
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            continue
        kind = "a string or a number" if name in _SNOWPLOW_NUMBER else "a string"
        return f"{name}: expected {kind}, got {type(value).__name__}"
    return None


def snowplow_to_native(
    params: Mapping[str, Any], user_agent: str | None = None
) -> dict[str, Any] | Untranslatable:
    """One event of the Snowplow tracker protocol (GET /i or an item of a POST payload); the
    request's `user_agent` stands in when the event has no `ua`."""
    problem = _mistyped(params)
    if problem is not None:
        return Untranslatable(problem, dict(params))
    params = {
        k: str(v) if k in _SNOWPLOW_NUMBER and v is not None else v for k, v in params.items()
    }
    kind = params.get("e")
    native: dict[str, Any] = {}
    if kind == "pv":
        native["type"] = "page"
        if params.get("page"):
            native["name"] = params["page"]
    elif kind == "se":
        native["type"] = "track"
        native["event"] = params.get("se_ac")
        properties = {"category": params.get("se_ca"), "label": params.get("se_la"),
                      "property": params.get("se_pr"),
                      "value": _as_number(params.get("se_va"))}  # fmt: skip
        native["properties"] = {k: v for k, v in properties.items() if v is not None}
    elif kind == "ue":
        native["type"] = "track"
        native["event"], native["properties"] = _self_describing(params)
    elif kind == "tr":
        native["type"], native["event"] = "track", "Order Completed"
        native["properties"] = {
            "order_id": params.get("tr_id"),
            "revenue": _as_number(params.get("tr_tt")),
            "currency": params.get("tr_cu"),
        }
    elif kind == "pp":
        native["type"], native["event"] = "track", "Page Ping"
    else:
        native["type"] = f"snowplow:{kind}"  # refused by validation, with the type named
    ids = {"event_id": params.get("eid"), "anonymous_id": params.get("duid") or
           params.get("nuid") or params.get("tnuid"), "user_id": params.get("uid")}  # fmt: skip
    native |= {k: v for k, v in ids.items() if v}
    timestamp = _milliseconds(params.get("ttm") or params.get("dtm"))
    if timestamp:
        native["timestamp"] = timestamp
        if params.get("stm"):
            native["sent_at"] = _milliseconds(params["stm"])
    page = {key: params[src] for key, src in (("url", "url"), ("referrer", "refr"),
                                               ("title", "page")) if params.get(src)}  # fmt: skip
    context: dict[str, Any] = {"library": params.get("tv")} if params.get("tv") else {}
    if page:
        context["page"] = page
    if params.get("ua") or user_agent:
        context["user_agent"] = (params.get("ua") or user_agent or "")[:1024]
    if params.get("lang"):
        context["locale"] = params["lang"]
    if context:
        native["context"] = context
    return native
