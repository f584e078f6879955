"""Who may read what: the caller a request's token names, and whether it may read a site.

Every read route needs a read token of the site it reads, or the admin token; the admin routes
need the admin token. A token travels as `Authorization: Bearer <token>`, or as the `token`
query parameter for a link that opens in a browser (the URL `klantreis up` prints). The order
of the checks keeps a stranger from learning anything: no token is 401, a token that reads
another site (or a write key, which only sends) is 403 whether the site exists or not, and only
a caller allowed to read a site learns that a site or customer does not exist (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.sites import SiteDirectory, basic_user, same_secret


class ReadRefused(Exception):
    """A read request refused whole: 401/403 by its token, 404 unknown site or customer, 409 a
    site that exists, 422 bad range or funnel."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class Caller:
    """Who a request is: the admin, or a reader of one site."""

    kind: Literal["admin", "reader"]
    site_id: str | None = None

    def may_read(self, site_id: str) -> bool:
        return self.kind == "admin" or self.site_id == site_id


def presented_token(authorization: str | None, query_token: str | None) -> str | None:
    """The secret a request presents: a Bearer token, an HTTP Basic user name (which is how a
    write key arrives, to be told it cannot read), else the `token` query parameter."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return credentials
        if scheme.lower() == "basic":
            try:
                user = basic_user(credentials)
            except ValueError:
                user = ""
            if user:
                return user
        raise ReadRefused(
            401, "bad_authorization", "send the token as `Authorization: Bearer <token>`"
        )
    return query_token or None


def identify(token: str | None, directory: SiteDirectory, admin_digest: str) -> Caller:
    """The caller `token` names; 401 without a token or with one no one issued, 403 for a write
    key."""
    if token is None:
        raise ReadRefused(
            401,
            "missing_token",
            "this API needs a read token or the admin token: `Authorization: Bearer <token>`",
        )
    if same_secret(token, admin_digest):
        return Caller("admin")
    site_id = directory.reader_of(token)
    if site_id is not None:
        return Caller("reader", site_id)
    if token in directory.write_keys:
        raise ReadRefused(
            403, "write_key", "a write key only sends events; reading needs a read token"
        )
    raise ReadRefused(401, "invalid_token", "the token is not valid (revoked, or never issued)")


def authorize_read(caller: Caller, site_id: str, directory: SiteDirectory) -> None:
    """403 for a site the caller may not read, before 404 for a site that does not exist."""
    if not caller.may_read(site_id):
        raise ReadRefused(403, "forbidden", f"this token may not read site {site_id!r}")
    if site_id not in directory.site_ids:
        raise ReadRefused(404, "unknown_site", f"no site {site_id!r}")


def authorize_admin(caller: Caller) -> None:
    if caller.kind != "admin":
        raise ReadRefused(403, "admin_only", "managing sites and erasure needs the admin token")
