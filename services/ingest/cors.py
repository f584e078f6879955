"""CORS for the collector's routes: what a shop's page on another origin needs to send events and
read the answer, whichever SDK sends them.

- Every answer of a collector route (errors, 404s and 405s included) carries the same headers,
  so an SDK can read a 4xx and stop retrying instead of retrying blind.
- The page's origin is reflected, with `Access-Control-Allow-Credentials: true` (Snowplow's
  tracker sends credentials by default), only when the site the request's write key belongs to
  allows that origin. Before a key is known (a preflight carries none, or the key was refused),
  an origin some site allows is reflected; the request itself is then checked against its own
  site. No cookie of the collector's is ever read, so credentials grant nothing.
- A preflight answers the request headers the browser asks for, when each is a plain header
  name (SDKs send their own: `X-Retry-Count`, anonymous-id headers, ...), at most 32 of them.

The routes record the site they resolved in the request's state (`SITE_STATE`); the read API
under `/api/` has no CORS at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.sites import SiteDirectory
from services.ingest.access import origin_allowed

SITE_STATE = "klantreis_site"
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
MAX_REQUEST_HEADERS = 32
EXPOSED = "Retry-After, X-Klantreis-Error"
METHODS = "GET, POST, OPTIONS"


def allowed_headers(requested: str) -> str | None:
    """The headers a preflight asked for, if each is a plain header name."""
    names = [name.strip() for name in requested.split(",") if name.strip()]
    if len(names) > MAX_REQUEST_HEADERS or not all(HEADER_NAME.match(n) for n in names):
        return None
    return ", ".join(names)


def origin_reflected(
    directory: SiteDirectory, origin: str, site_id: str | None, key: str | None
) -> bool:
    """Whether the answer may be read by a page at `origin`."""
    if site_id is None and key:
        site_id = directory.write_keys.get(key)
    if site_id is not None:
        return origin_allowed(directory.site_hosts, site_id, origin)
    return any(origin_allowed(directory.site_hosts, site, origin) for site in directory.sites)


def cors_headers(
    directory: SiteDirectory, origin: str, site_id: str | None, key: str | None
) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an answer to a page at `origin` (none when it may not read it)."""
    if not origin_reflected(directory, origin, site_id, key):
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", EXPOSED.encode()),
    ]


class CollectorCors:
    """The middleware: preflights answered here, headers added to every collector answer."""

    def __init__(
        self,
        app: ASGIApp,
        directory: Callable[[], SiteDirectory | None],
        is_collector_path: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.directory = directory
        self.is_collector_path = is_collector_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_collector_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        directory = self.directory()
        if origin is None or directory is None:
            await self.app(scope, receive, send)
            return
        key = QueryParams(scope.get("query_string", b"")).get("key")
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(send, directory, origin, key, headers)
            return
        state: Mapping[str, object] = scope.setdefault("state", {})

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                site = state.get(SITE_STATE)
                site_id = site if isinstance(site, str) else None
                added = [*cors_headers(directory, origin, site_id, key), (b"vary", b"Origin")]
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"vary"]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(
        self, send: Send, directory: SiteDirectory, origin: str, key: str | None, headers: Headers
    ) -> None:
        answer = cors_headers(directory, origin, None, key)
        if answer:
            answer += [
                (b"access-control-allow-methods", METHODS.encode()),
                (b"access-control-max-age", b"86400"),
            ]
            requested = allowed_headers(headers.get("access-control-request-headers", ""))
            if requested:
                answer.append((b"access-control-allow-headers", requested.encode()))
        answer += [(b"vary", b"Origin"), (b"vary", b"Access-Control-Request-Headers")]
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})
