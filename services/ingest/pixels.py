"""Events that arrive as query parameters: the native GIF pixel and the Snowplow tracker protocol.

A pixel is for places without JavaScript (e-mail opens, no-JS pages); Snowplow's protocol lets
shops with Snowplow trackers send here unchanged, with the app id (`aid`) carrying the write key.
Both are translated into native events and validated like them.
"""

from __future__ import annotations

import base64
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


def _json_field(params: Mapping[str, str], plain: str, encoded: str) -> Any:
    """A JSON field sent as it is (`ue_pr`, `co`) or base64url-encoded (`ue_px`, `cx`)."""
    raw = params.get(plain)
    if raw is None and params.get(encoded):
        text = params[encoded]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 inside
            return None
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _schema_name(schema: Any) -> str:
    """iglu:com.acme/product_viewed/jsonschema/1-0-0 -> product_viewed."""
    text = str(schema)
    return text.split("/")[1] if "/" in text else text


def _self_describing(params: Mapping[str, str]) -> tuple[str, str | None, dict[str, Any]]:
    """The schema name, the event name (from its schema) and data of a Snowplow
    self-describing event."""
    envelope = _json_field(params, "ue_pr", "ue_px")
    try:
        inner = envelope["data"]
        schema, data = inner["schema"], inner.get("data", {})
    except (KeyError, TypeError):
        return "", None, {}
    name = _schema_name(schema)
    return name, name.replace("_", " ").title(), data if isinstance(data, dict) else {"value": data}


def _entities(params: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The entity contexts attached to an event (`co`, or `cx` encoded): (name, data) each."""
    envelope = _json_field(params, "co", "cx")
    items = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(items, list):
        return []
    return [
        (_schema_name(item.get("schema")), item["data"])
        for item in items
        if isinstance(item, dict) and isinstance(item.get("data"), dict)
    ]


# Snowplow's e-commerce plugin (4.x): one action event, its meaning in entities. Each action as
# the Segment e-commerce event klantreis's phase model reads.
_ECOMMERCE_ACTIONS = {
    "transaction": "Order Completed",
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "product_view": "Product Viewed",
    "list_view": "Product List Viewed",
    "list_click": "Product Clicked",
    "checkout_step": "Checkout Step Viewed",
    "promo_view": "Promotion Viewed",
    "promo_click": "Promotion Clicked",
    "refund": "Order Refunded",
    "trns_error": "Payment Failed",
}


def _product(data: Mapping[str, Any]) -> dict[str, Any]:
    """A Snowplow product entity in the Segment spec's names."""
    names = {"id": "product_id", "name": "name", "category": "category", "price": "price",
             "quantity": "quantity", "currency": "currency", "brand": "brand",
             "variant": "variant", "list_price": "list_price"}  # fmt: skip
    return {names[k]: v for k, v in data.items() if k in names and v is not None}


def _ecommerce(action: str, entities: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The properties of an e-commerce action, from its entities."""
    products = [_product(data) for name, data in entities if name == "product"]
    found = {name: data for name, data in entities}
    properties: dict[str, Any] = {}
    if action in ("transaction", "trns_error") and "transaction" in found:
        order = found["transaction"]
        properties = {"order_id": order.get("transaction_id"), "revenue": order.get("revenue"),
                      "currency": order.get("currency"), "tax": order.get("tax"),
                      "shipping": order.get("shipping"), "coupon": order.get("discount_code"),
                      "payment_method": order.get("payment_method")}  # fmt: skip
        if action == "trns_error" and "transaction_error" in found:
            error = found["transaction_error"]
            properties["reason"] = error.get("error_description") or error.get("error_code")
    elif action == "refund" and "refund" in found:
        refund = found["refund"]
        properties = {"order_id": refund.get("transaction_id"),
                      "total": refund.get("refund_amount"),
                      "currency": refund.get("currency")}  # fmt: skip
    elif action == "checkout_step" and "checkout_step" in found:
        properties = {"step": found["checkout_step"].get("step")}
    elif action in ("add_to_cart", "remove_from_cart", "product_view") and products:
        properties = dict(products[0])
        cart = found.get("cart", {})
        if cart.get("cart_id") is not None:
            properties["cart_id"] = cart["cart_id"]
    if products and (action not in ("add_to_cart", "remove_from_cart", "product_view")
                     or len(products) > 1):  # fmt: skip
        properties["products"] = products
    return {k: v for k, v in properties.items() if v is not None}


# The tracker protocol's fields this translation reads: strings, and for times and amounts also
# JSON numbers (a POST payload is JSON, and some trackers send numbers there).
_SNOWPLOW_TEXT = ("e", "aid", "page", "se_ac", "se_ca", "se_la", "se_pr", "ue_pr", "ue_px",
                  "co", "cx", "tr_id", "tr_af", "tr_cu", "ti_id", "ti_sk", "ti_nm", "ti_ca",
                  "ti_cu", "eid", "duid", "nuid", "tnuid", "uid", "url", "refr", "tv", "ua",
                  "lang")  # fmt: skip
_SNOWPLOW_NUMBER = ("dtm", "ttm", "stm", "se_va", "tr_tt", "tr_tx", "tr_sh", "ti_pr", "ti_qu",
                    "pp_mix", "pp_max", "pp_miy", "pp_may")  # fmt: skip


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
    params: Mapping[str, Any], user_agent: str | None = None, referrer: str | None = None
) -> dict[str, Any] | Untranslatable:
    """One event of the Snowplow tracker protocol (GET /i or an item of a POST payload); the
    request's `user_agent` and `referrer` (the page that sent it) stand in when the event has
    no `ua` or `url`.

    Entity contexts (`co`/`cx`) are kept in the properties as `contexts` ({schema name: data},
    a list where a name repeats); the e-commerce plugin's actions and the legacy `tr`/`ti`
    events become the e-commerce events of the Segment spec, with their revenue and products.
    """
    problem = _mistyped(params)
    if problem is not None:
        return Untranslatable(problem, dict(params))
    params = {
        k: str(v) if k in _SNOWPLOW_NUMBER and v is not None else v for k, v in params.items()
    }
    kind = params.get("e")
    entities = _entities(params)
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
        schema, native["event"], native["properties"] = _self_describing(params)
        action = native["properties"].get("type")
        if schema == "snowplow_ecommerce_action" and action in _ECOMMERCE_ACTIONS:
            native["event"] = _ECOMMERCE_ACTIONS[action]
            native["properties"] = _ecommerce(action, entities)
    elif kind == "tr":
        native["type"], native["event"] = "track", "Order Completed"
        native["properties"] = _present(
            order_id=params.get("tr_id"), revenue=_as_number(params.get("tr_tt")),
            tax=_as_number(params.get("tr_tx")), shipping=_as_number(params.get("tr_sh")),
            affiliation=params.get("tr_af"), currency=params.get("tr_cu"),
        )  # fmt: skip
    elif kind == "ti":
        native["type"], native["event"] = "track", "Order Line Item"
        native["properties"] = _present(
            order_id=params.get("ti_id"), sku=params.get("ti_sk"), name=params.get("ti_nm"),
            category=params.get("ti_ca"), price=_as_number(params.get("ti_pr")),
            quantity=_as_number(params.get("ti_qu")), currency=params.get("ti_cu"),
        )  # fmt: skip
    elif kind == "pp":
        native["type"], native["event"] = "track", "Page Ping"
        native["properties"] = _present(
            x_min=_as_number(params.get("pp_mix")), x_max=_as_number(params.get("pp_max")),
            y_min=_as_number(params.get("pp_miy")), y_max=_as_number(params.get("pp_may")),
        )  # fmt: skip
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
    if entities:
        kept: dict[str, Any] = {}
        for name, data in entities:
            if name not in kept:
                kept[name] = data
            elif isinstance(kept[name], list):
                kept[name].append(data)
            else:
                kept[name] = [kept[name], data]
        native["properties"] = {**native.get("properties", {}), "contexts": kept}
    page = {key: params[src] for key, src in (("url", "url"), ("referrer", "refr"),
                                               ("title", "page")) if params.get(src)}  # fmt: skip
    if "url" not in page and referrer:
        page["url"] = referrer[:2048]  # the page that sent the request
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


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
