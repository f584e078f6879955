"""The collector's HTTP surface: every protocol's request goes through one intake pipeline.

1. read the body (`read_body`: encoding, content type, size, gzip bombs);
2. translate the protocol into native events (`_native`, `_segment`, `_snowplow_batch`, the
   pixels), which yields a `Submission`;
3. check who sends and how much, once for every protocol: the write key's site, the page's
   origin, the batch size (`_admit`);
4. validate and enrich each event (`intake`);
5. publish to the sink and answer (`_publish`).

Request bodies are read by hand (not through FastAPI's body parsing) so that a malformed,
oversized or mistyped body gets its own precise 4xx message and can never surface as a 5xx.
"""

from __future__ import annotations

import gzip
import math
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NamedTuple

import msgspec
import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from contracts.pseudonyms import Pseudonyms
from contracts.settings import Settings
from contracts.sites import SiteDirectory
from contracts.sitestore import SiteStore
from services.ingest import pixels, segment
from services.ingest.access import client_address, origin_allowed, request_write_key, site_of
from services.ingest.cors import SITE_STATE, CollectorCors
from services.ingest.intake import (
    RequestRefused,
    check_batch_size,
    decode_body,
    decode_json,
    intake,
)
from services.ingest.privacy import (
    cookieless_visitor,
    has_consent,
    opted_out,
    user_agent_of,
    with_visitor,
)
from services.ingest.ratelimit import TokenBuckets
from services.ingest.schema import IncomingEvent
from services.ingest.segment import SEGMENT_TYPES, SHORT_CALLS, write_key_of
from services.ingest.sink import EventSink, SinkUnavailable
from services.ingest.telemetry import IngestMetrics

# The body is JSON (or newline-delimited JSON). text/plain and form-urlencoded are accepted
# because browsers send them without a CORS preflight (sendBeacon, simple fetches) and curl sends
# the latter by default.
ACCEPTED_CONTENT_TYPES = (
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
)


@dataclass
class IngestContext:
    settings: Settings
    sink: EventSink
    metrics: IngestMetrics
    sites: SiteStore
    pseudonyms: Pseudonyms | None = None
    per_ip: TokenBuckets = field(init=False)
    per_site: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        rate_ip, rate_site = self.settings.rate_limit_per_ip, self.settings.rate_limit_per_site
        self.per_ip = TokenBuckets(rate_ip, 2 * rate_ip)
        self.per_site = TokenBuckets(rate_site, max(2 * rate_site, self.settings.max_batch_events))


router = APIRouter()
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/IncomingEvent"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/IncomingEvent"},
                        },
                    ]
                }
            }
        },
    }
}


def is_collector_path(path: str) -> bool:
    """The routes browsers send events to (and fetch the tracker from): they answer CORS."""
    return path.startswith("/v1/") or path in ("/i", "/com.snowplowanalytics.snowplow/tp2", "/t.js")


def install(app: FastAPI) -> None:
    """Mount the collector's routes and publish the event schema in the app's OpenAPI document.

    The body is parsed by hand, so FastAPI cannot see its model; the schema is added here.
    """
    app.include_router(router)

    def directory() -> SiteDirectory | None:
        context: IngestContext | None = getattr(app.state, "ingest", None)
        return None if context is None else context.sites.directory

    app.add_middleware(CollectorCors, directory=directory, is_collector_path=is_collector_path)
    # The ingestion endpoints take only the request and build their own responses, so each
    # also runs as a plain Starlette route ahead of FastAPI's: that skips FastAPI's per-request
    # dependency resolution, a fifth of a one-event request. FastAPI's routes stay, so the
    # OpenAPI document still describes them.
    plain = {post_events, pixel, snowplow_get, snowplow_post, tracker}
    for route in reversed(router.routes):
        if isinstance(route, APIRoute) and route.endpoint in plain:
            app.router.routes.insert(0, Route(route.path, route.endpoint, methods=route.methods))
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build_openapi()
            (_,), schemas = msgspec.json.schema_components(
                [IncomingEvent], ref_template="#/components/schemas/{name}"
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def client_ip(request: Request, settings: Settings) -> str:
    connection = request.client.host if request.client else ""
    return client_address(request.headers.get("x-forwarded-for"), connection, settings.proxy_hops)


def _rate_limited(wait: float, who: str) -> JSONResponse:
    seconds = max(1, math.ceil(wait))
    response = _error(429, "rate_limited", f"too many events from {who}; retry in {seconds}s")
    response.headers["Retry-After"] = str(seconds)
    return response


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


@router.post(
    "/v1/events",
    openapi_extra=_REQUEST_BODY,
    summary="Send one event or a batch of events",
    responses={
        200: {"description": "Accepted (refused events of a batch are listed in `rejected`)"},
        400: {"description": "Malformed body, or no event in it was valid"},
        401: {"description": "Missing or unknown write key"},
        413: {"description": "Body or batch too large"},
        415: {"description": "Unsupported content type or encoding"},
        503: {"description": "Events could not be stored in time; retry"},
    },
)
async def post_events(request: Request) -> Response:
    return await _admit(request, "/v1/events", _native, _native_body)


class Submission(NamedTuple):
    """A request translated into native events, not yet validated, and the write key its
    protocol carried in the body, if any (the request's own key comes first)."""

    items: list[Any]
    body_key: str | None = None


Translate = Callable[[Request, IngestContext], Awaitable[Submission]]


async def _native(request: Request, context: IngestContext) -> Submission:
    return Submission(decode_body(await _read(request, context)))


async def _read(request: Request, context: IngestContext) -> bytes:
    raw = await read_body(request, context.settings.max_body_bytes)
    context.metrics.request_bytes.inc(len(raw))
    return raw


def _native_body(accepted: int, rejected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"accepted": accepted, **({"rejected": rejected} if rejected else {})}


@router.post(
    "/v1/{call}",
    summary="The Segment HTTP tracking API: track, page, screen, identify, group, alias, batch",
    description=(
        "Segment-spec messages (camelCase), one per call or a `batch`. The write key is the "
        'HTTP Basic user name or `writeKey` in the body. Answers `{"success": true}` like '
        "Segment, plus what klantreis accepted and refused."
    ),
    responses={400: {"description": "Unreadable body"}, 401: {"description": "Bad write key"}},
)
async def post_segment(request: Request, call: str) -> Response:
    call = SHORT_CALLS.get(call, call)
    if call not in SEGMENT_CALLS:
        return _error(404, "not_found", f"no endpoint /v1/{call}")

    async def translate(request: Request, context: IngestContext) -> Submission:
        body = decode_json(await _read(request, context))
        messages = segment.messages_of(body, call)
        if not messages:
            raise RequestRefused(400, "empty_batch", "a batch call needs a non-empty `batch` array")
        body_key = write_key_of(body) if isinstance(body, dict) else None
        return Submission([segment.to_native(message) for message in messages], body_key)

    return await _admit(request, f"/v1/{call}", translate, _segment_body)


SEGMENT_CALLS = SEGMENT_TYPES | {"batch", "import"}


@router.get(
    "/v1/projects/{write_key}/settings",
    summary="Settings for Segment's analytics.js (`cdnURL`): send events to this collector",
    description=(
        "analytics.js (`@segment/analytics-next`) loads its settings from "
        "`<cdnURL>/v1/projects/<writeKey>/settings`. With `cdnURL` set to the collector, it "
        "finds here that its Segment.io destination is this collector, and sends there."
    ),
    responses={404: {"description": "Unknown write key"}},
)
async def segment_settings(request: Request, write_key: str) -> Response:
    context: IngestContext = request.app.state.ingest
    if write_key not in context.sites.directory.write_keys:
        return _error(404, "unknown_write_key", "the write key is not known to this collector")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    scheme = request.url.scheme
    if context.settings.proxy_hops:  # behind a proxy of one's own, as the client sees it
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
    return JSONResponse(segment.settings_for(write_key, f"{host}/v1", scheme))


def _segment_body(accepted: int, rejected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": True, **_native_body(accepted, rejected)}


@router.get(
    "/v1/pixel.gif",
    summary="A 1x1 GIF that records one event from its query parameters",
    description=(
        "For e-mail opens and pages without JavaScript: `key` (write key), `type`, `event`, "
        "`name`, `anonymous_id`, `user_id`, `event_id`, `timestamp`, `url`, `referrer`, "
        "`title`, `utm_*`, `p.<property>` and `t.<trait>`. Always answers a GIF; a refused "
        "event gets a 4xx status and the reason in `X-Klantreis-Error`."
    ),
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}},
)
async def pixel(request: Request) -> Response:
    async def translate(request: Request, context: IngestContext) -> Submission:
        user_agent = request.headers.get("user-agent")
        return Submission([pixels.pixel_to_native(request.query_params, user_agent)])

    return await _admit(request, "/v1/pixel.gif", translate, _native_body, pixel=True)


@router.get(
    "/i",
    summary="Snowplow tracker protocol, GET: one event; the app id (`aid`) is the write key",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}},
)
async def snowplow_get(request: Request) -> Response:
    async def translate(request: Request, context: IngestContext) -> Submission:
        params = request.query_params
        native = pixels.snowplow_to_native(
            params, request.headers.get("user-agent"), request.headers.get("referer")
        )
        return Submission([native], params.get("aid"))

    return await _admit(request, "/i", translate, _native_body, pixel=True)


@router.post(
    "/com.snowplowanalytics.snowplow/tp2",
    summary="Snowplow tracker protocol, POST: a payload_data batch; `aid` is the write key",
)
async def snowplow_post(request: Request) -> Response:
    return await _admit(
        request, "/com.snowplowanalytics.snowplow/tp2", _snowplow_batch, _native_body
    )


async def _snowplow_batch(request: Request, context: IngestContext) -> Submission:
    body = decode_json(await _read(request, context))
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise RequestRefused(400, "empty_batch", "a payload_data body needs a non-empty `data`")
    app_ids = set()
    for index, item in enumerate(items):
        app_id = item.get("aid") if isinstance(item, dict) else None
        if app_id is not None and not isinstance(app_id, str):
            raise RequestRefused(
                400,
                "bad_app_id",
                f"data.{index}.aid: expected a string (the write key), got {type(app_id).__name__}",
            )
        app_ids.add(app_id)
    if len(app_ids) > 1:
        raise RequestRefused(400, "mixed_app_ids", "all events of a batch need the same `aid`")
    user_agent, referrer = request.headers.get("user-agent"), request.headers.get("referer")
    natives = [
        pixels.snowplow_to_native(item, user_agent, referrer) if isinstance(item, dict) else item
        for item in items
    ]
    return Submission(natives, next(iter(app_ids), None))


def _as_gif(answer: Response) -> Response:
    """A JSON answer as a pixel's answer: same status, the message in a header, and a
    rate limit's Retry-After kept."""
    error = None if answer.status_code == 200 else orjson.loads(answer.body)["message"]
    gif = _gif(answer.status_code, error)
    if "Retry-After" in answer.headers:
        gif.headers["Retry-After"] = answer.headers["Retry-After"]
    return gif


def _gif(status: int, error: str | None) -> Response:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate"}
    if error:
        headers["X-Klantreis-Error"] = error.encode("ascii", "replace").decode()[:500]
    return Response(pixels.GIF, status_code=status, media_type="image/gif", headers=headers)


Respond = Callable[[int, list[dict[str, Any]]], dict[str, Any]]


async def _admit(
    request: Request, route: str, translate: Translate, respond: Respond, pixel: bool = False
) -> Response:
    """Steps 2-5 of the pipeline for one request, and its answer: JSON, or a GIF for a pixel."""
    context: IngestContext = request.app.state.ingest
    settings = context.settings
    context.metrics.in_flight.inc()
    site_id: str | None = None
    directory = context.sites.directory
    try:
        wait = context.per_ip.take(client_ip(request, settings))
        if wait:
            response: Response = _rate_limited(wait, "this client")
        else:
            try:
                submission = await translate(request, context)
                key = request_write_key(request.headers, request.query_params)
                site_id = site_of(key or submission.body_key, directory.write_keys)
                setattr(request.state, SITE_STATE, site_id)  # CORS answers for this site
                origin = request.headers.get("origin")
                if origin and not origin_allowed(directory.site_hosts, site_id, origin):
                    raise RequestRefused(
                        403,
                        "origin_not_allowed",
                        f"pages on {origin} may not send events for this site",
                    )
                check_batch_size(len(submission.items), settings.max_batch_events)
            except RequestRefused as exc:
                response = _error(exc.status, exc.code, exc.message)
            else:
                response = await _publish(context, site_id, submission.items, respond, request)
        if pixel:
            response = _as_gif(response)
    finally:
        context.metrics.in_flight.dec()
    context.metrics.requests.labels(route, str(response.status_code)).inc()
    return response


_TRACKER = (resources.files("services.ingest") / "static" / "t.js").read_bytes()
_TRACKER_GZ = gzip.compress(_TRACKER, mtime=0)


@router.get("/t.js", include_in_schema=False)
async def tracker(request: Request) -> Response:
    """The browser tracker; gzipped for browsers that accept it (all of them)."""
    headers = {"Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(_TRACKER_GZ, media_type="application/javascript", headers=headers)
    return Response(_TRACKER, media_type="application/javascript", headers=headers)


async def _publish(
    context: IngestContext,
    site_id: str,
    items: list[Any],
    respond: Respond,
    request: Request,
) -> JSONResponse:
    """Apply the site's privacy settings, validate and enrich the items, store them, and
    answer: 200 when any event was stored or the site's settings said not to store them
    (`ignored`), 400 when none was valid, 429 over the site's rate, 503 when storage did not
    acknowledge."""
    wait = context.per_site.take(site_id, cost=len(items))
    if wait:
        context.metrics.rate_limited.labels(site_id).inc()
        return _rate_limited(wait, "this site")
    site = context.sites.directory.sites[site_id]
    positions = list(range(len(items)))
    if site.honour_dnt and opted_out(request.headers):
        positions = []
    elif site.require_consent:
        positions = [i for i in positions if has_consent(items[i])]
    ignored = len(items) - len(positions)
    if ignored:
        context.metrics.events_ignored.labels(site_id).inc(ignored)
        if not positions:
            return JSONResponse({**respond(0, []), "ignored": ignored})
        items = [items[i] for i in positions]
    if site.cookieless:
        salt = await context.sites.salt_of(datetime.now(UTC).date())
        address, agent = client_ip(request, context.settings), request.headers.get("user-agent")
        items = [
            with_visitor(
                item, cookieless_visitor(salt, site_id, user_agent_of(item, agent), address)
            )
            for item in items
        ]
    settings = context.settings
    result = intake(
        items, site_id, datetime.now(UTC), settings.max_event_bytes, context.pseudonyms,
        settings.max_amount,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        if result.dead_letters:
            await context.sink.dead_letter(result.dead_letters)
        if result.events:
            await context.sink.publish(result.events)
    except SinkUnavailable:
        return _error(
            503,
            "unavailable",
            "events could not be stored right now; retry the same request later",
        )
    context.metrics.publish_seconds.observe(time.perf_counter() - started)
    for rejection in result.rejections:
        context.metrics.events_rejected.labels(site_id, rejection.reason.value).inc()
    context.metrics.events_accepted.labels(site_id).inc(len(result.events))
    bots = sum(event.is_bot for event in result.events)
    if bots:
        context.metrics.bots_flagged.labels(site_id).inc(bots)

    rejected = [
        {"index": positions[r.index], "reason": r.reason.value, "message": r.message}
        for r in result.rejections
    ]
    if not result.events:
        first = result.rejections[0]
        prefix = f"event {positions[first.index]}: " if len(positions) > 1 or ignored else ""
        return _error(400, "invalid_event", prefix + first.message, rejected=rejected)
    return JSONResponse(
        {**respond(len(result.events), rejected), **({"ignored": ignored} if ignored else {})}
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed if gzipped; `limit` bounds both what is read and what it inflates
    to, so a small gzip bomb is refused with 413 before it can fill memory."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise RequestRefused(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported"
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise RequestRefused(
            415,
            "unsupported_content_type",
            f"Content-Type {content_type!r} is not supported; send application/json",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRefused(
            413, "body_too_large", f"the body is {declared} bytes; at most {limit}"
        )
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    chunks: list[bytes] = []
    size = read = 0
    async for chunk in _chunks(request):
        read += len(chunk)
        if read > limit:
            raise RequestRefused(413, "body_too_large", f"the body exceeds {limit} bytes")
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, limit + 1 - size)
            except zlib.error as exc:
                raise RequestRefused(
                    400, "malformed_gzip", f"the gzip body is corrupt: {exc}"
                ) from None
            if inflater.unconsumed_tail:
                chunk += b"x"  # more output was waiting: over the limit
        size += len(chunk)
        if size > limit:
            raise RequestRefused(
                413, "body_too_large", f"the body decompresses to more than {limit} bytes"
            )
        chunks.append(chunk)
    if inflater is not None and not inflater.eof and read:
        raise RequestRefused(400, "malformed_gzip", "the gzip body is truncated")
    return b"".join(chunks)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client gone before its end (or cut off for being too slow)
    is refused like any incomplete request, not logged as a server error."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise RequestRefused(
            408, "incomplete_body", "the connection closed before the body arrived"
        ) from None
