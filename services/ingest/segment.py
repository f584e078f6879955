"""The Segment HTTP tracking API, translated into klantreis's native events.

Shops that send with Segment-spec libraries switch to klantreis by changing one URL. Messages are
translated field by field into the native shape and then go through exactly the same validation
and enrichment as native events, so both APIs accept and refuse the same things.
"""

from __future__ import annotations

from typing import Any

# Segment name -> native name, for the fields both have.
_TOP_LEVEL = {
    "messageId": "event_id",
    "type": "type",
    "event": "event",
    "name": "name",
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "previousId": "previous_id",
    "groupId": "group_id",
    "timestamp": "timestamp",
    "sentAt": "sent_at",
    "properties": "properties",
    "traits": "traits",
}
_CONTEXT = {"userAgent": "user_agent", "locale": "locale", "ip": "ip", "page": "page",
            "campaign": "campaign"}  # fmt: skip
# Segment's "screen" is a page view in an app.
_TYPES = {"track": "track", "page": "page", "screen": "page", "identify": "identify",
          "alias": "alias", "group": "group"}  # fmt: skip
SEGMENT_TYPES = frozenset(_TYPES)
# analytics.js posts to the first letter of the call (its Segment.io plugin): /v1/t, /v1/p, ...
SHORT_CALLS = {"t": "track", "p": "page", "s": "screen", "i": "identify", "a": "alias",
               "g": "group", "b": "batch"}  # fmt: skip
_IDS = ("userId", "anonymousId", "previousId", "groupId")


def write_key_of(body: dict[str, Any]) -> str | None:
    """Segment lets clients put the write key in the body instead of the Authorization header."""
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


def messages_of(body: Any, call: str) -> list[Any]:
    """The messages of a request to `/v1/<call>`: the `batch` of a batch call, else the body."""
    if call in ("batch", "import"):
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            return []
        context = body.get("context")
        shared_context: dict[str, Any] = context if isinstance(context, dict) else {}
        sent_at = body.get("sentAt")
        return [
            {**({"sentAt": sent_at} if sent_at else {}), **m,
             "context": {**shared_context, **m["context"]}
             if isinstance(m.get("context"), dict) else m.get("context") or shared_context}
            if isinstance(m, dict) else m
            for m in body["batch"]
        ]  # fmt: skip
    if not isinstance(body, dict):
        return [body]
    return [{**body, "type": body.get("type", call)}]


def to_native(message: Any) -> Any:
    """One Segment message as a native event; what cannot be translated is passed on as it is,
    so that validation names the problem.

    As Segment's own API does: an empty-string id counts as absent (SDKs send `userId: ""` for
    anonymous visitors); `originalTimestamp` stands in for a missing `timestamp`; identify
    traits may come in `context.traits`; a page's `category` is a property; `integrations` and
    context fields klantreis does not keep are ignored.
    """
    if not isinstance(message, dict):
        return message
    message = {k: v for k, v in message.items() if not (k in _IDS and v == "")}
    native: dict[str, Any] = {}
    for key, value in message.items():
        if key in _TOP_LEVEL and value is not None:
            native[_TOP_LEVEL[key]] = value
    if "timestamp" not in native and message.get("originalTimestamp") is not None:
        native["timestamp"] = message["originalTimestamp"]
    kind = message.get("type")
    if isinstance(kind, str):
        native["type"] = _TYPES.get(kind, kind)
        if kind == "screen" and "name" not in native and "event" in native:
            native["name"] = native.pop("event")
        if kind in ("page", "screen") and isinstance(message.get("category"), str):
            properties = native.get("properties")
            if isinstance(properties, dict) and "category" not in properties:
                native["properties"] = {**properties, "category": message["category"]}
            elif properties is None:
                native["properties"] = {"category": message["category"]}
    for id_field in ("user_id", "anonymous_id", "previous_id", "group_id"):
        if isinstance(native.get(id_field), int | float):
            native[id_field] = str(native[id_field])  # Segment accepts numeric ids
    context = message.get("context")
    if isinstance(context, dict):
        native_context: dict[str, Any] = {
            _CONTEXT[key]: value for key, value in context.items() if key in _CONTEXT
        }
        library = context.get("library")
        if isinstance(library, dict):
            name, version = library.get("name"), library.get("version")
            native_context["library"] = f"{name}/{version}" if version else name
        native["context"] = native_context
        traits = context.get("traits")
        if kind == "identify" and isinstance(traits, dict) and traits:
            own = native.get("traits")
            native["traits"] = {**traits, **own} if isinstance(own, dict) else traits
    elif context is not None:
        native["context"] = context  # not an object: validation names it
    return native


def settings_for(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """The settings analytics.js reads from its CDN, with one destination: Segment.io pointed at
    `api_host`. No remote plugins or middleware to load, and no metrics sent to Segment."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol if protocol in ("http", "https") else "https",
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
