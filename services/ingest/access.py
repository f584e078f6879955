"""Who may send events: the write key a request carries, its site, and the page hosts a site
allows. Pure: the HTTP layer passes in the headers and the configured keys and hosts."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from contracts.sites import basic_user
from services.ingest.intake import RequestRefused


def request_write_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The write key of the request itself: the HTTP Basic user name (as Segment's libraries
    send it), else the `key` query parameter (for beacons and pixels, which cannot set
    headers)."""
    header = headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            raise RequestRefused(
                401, "bad_authorization", "use HTTP Basic with the write key as user"
            )
        try:
            return basic_user(credentials) or None
        except ValueError:
            raise RequestRefused(
                401, "bad_authorization", "the Authorization header is not valid HTTP Basic"
            ) from None
    return query.get("key") or None


def client_address(forwarded_for: str | None, connection: str, proxy_hops: int) -> str:
    """The client's address: the connection's, or behind `proxy_hops` proxies of one's own the
    X-Forwarded-For entry they added (that many from the right). Entries further left are the
    client's own say and prove nothing; a chain shorter than the proxies means the request did
    not come through them, and the connection's address stands."""
    if not proxy_hops or not forwarded_for:
        return connection
    chain = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if len(chain) < proxy_hops:
        return connection
    return chain[-proxy_hops]


def site_of(key: str | None, write_keys: Mapping[str, str]) -> str:
    """The site a write key sends for; a missing or unknown key is a 401."""
    if not key:
        raise RequestRefused(
            401,
            "missing_write_key",
            "no write key: send it as the HTTP Basic user name or the `key` query parameter",
        )
    site_id = write_keys.get(key)
    if site_id is None:
        raise RequestRefused(
            401, "unknown_write_key", "the write key is not known to this collector"
        )
    return site_id


def origin_allowed(site_hosts: Mapping[str, list[str]], site_id: str, origin: str) -> bool:
    """Whether a browser page at `origin` (scheme://host[:port]) may send for `site_id`; a site
    without listed hosts accepts every host."""
    hosts = site_hosts.get(site_id)
    if not hosts:
        return True
    host = urlsplit(origin).hostname or ""
    return any(
        host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
        for allowed in hosts
    )
