"""The dashboard at `/`: one page and its two assets, served by the read API itself.

No build step and no CDN: the page is plain HTML, CSS and an ES module, pinned in the package and
read once at start. It reads every figure from `/api/v1/...` with the read token, so it shows
nothing the token could not read. The page itself holds no data and needs no token; a link with
`?token=` logs the browser in (the token goes to the tab's sessionStorage and leaves the address
bar at once; the servers keep no access log).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

_STATIC = resources.files("services.metrics") / "static"
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_FILES = {name: (_STATIC / name).read_bytes() for name in ("dashboard.html", *_ASSETS)}
# The page loads only its own assets and talks only to its own origin; it sends no referrer, so
# a link it was opened with (and its token) goes nowhere else.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> Response:
    return Response(
        _FILES["dashboard.html"], media_type="text/html; charset=utf-8", headers=_HEADERS
    )


@router.get("/dashboard/{name}")
async def asset(name: str) -> Response:
    if name not in _ASSETS:
        return Response(status_code=404)
    return Response(_FILES[name], media_type=_ASSETS[name], headers=_HEADERS)
