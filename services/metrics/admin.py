"""The admin API (`/api/v1/admin/...`): sites, their hosts, write keys and read tokens.

Only the admin token may call it. Changes go to the site store (`contracts/sitestore.py`), which
every collector follows; `klantreis sites` is this API on the command line.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from contracts.sites import (
    MintedToken,
    SiteRecord,
    mint_read_token,
    new_site,
    new_write_key,
    validated,
)
from services.metrics.access import ReadRefused, authorize_admin
from services.metrics.api import ReadContext, Who
from services.metrics.erasure import ErasureLog, ErasureStatus


def _admin(request: Request, who: Who) -> ReadContext:
    authorize_admin(who)
    context: ReadContext = request.app.state.read
    return context


Admin = Annotated[ReadContext, Depends(_admin)]
router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Depends(_admin)])
# Erasure is an admin call on the customer's own path.
customers = APIRouter(prefix="/api/v1", tags=["admin"], dependencies=[Depends(_admin)])
SiteId = Annotated[str, Path(min_length=1, max_length=100)]
Hosts = list[Annotated[str, Field(min_length=1, max_length=260)]]


class TokenView(BaseModel):
    """A read token as it is listed: never its secret, which is shown once when made."""

    token_id: str
    name: str
    created_at: datetime


class Privacy(BaseModel):
    """A site's privacy settings (docs/privacy.md)."""

    cookieless: bool = Field(
        default=False, description="Visitor ids from a daily salted hash; no cookie or storage"
    )
    require_consent: bool = Field(
        default=False, description="Store only events with `context.consent: true`"
    )
    honour_dnt: bool = Field(
        default=False, description="Store nothing from requests with `DNT: 1` or `Sec-GPC: 1`"
    )


class SiteView(BaseModel):
    site_id: str
    write_keys: list[str]
    hosts: list[str]
    read_tokens: list[TokenView]
    privacy: Privacy

    @classmethod
    def of(cls, site: SiteRecord) -> SiteView:
        return cls(
            site_id=site.site_id,
            write_keys=list(site.write_keys),
            hosts=list(site.hosts),
            read_tokens=[
                TokenView(token_id=t.token_id, name=t.name, created_at=t.created_at)
                for t in site.read_tokens
            ],
            privacy=Privacy(
                cookieless=site.cookieless,
                require_consent=site.require_consent,
                honour_dnt=site.honour_dnt,
            ),
        )


class SitesResponse(BaseModel):
    sites: list[SiteView]


class NewSite(BaseModel):
    site_id: str = Field(min_length=1, max_length=100)
    hosts: Hosts = Field(default_factory=list, description="Page hosts; none: every host")


class NewToken(BaseModel):
    name: str = Field(default="", max_length=200, description="Who or what the token is for")


class IssuedToken(BaseModel):
    """A new read token. `token` is shown here once: only its digest is kept."""

    site_id: str
    token_id: str
    name: str
    token: str


def _site(context: ReadContext, site_id: str) -> SiteRecord:
    site = context.sites.directory.sites.get(site_id)
    if site is None:
        raise ReadRefused(404, "unknown_site", f"no site {site_id!r}")
    return site


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/sites", response_model=SitesResponse, summary="Every site, its keys and tokens")
async def list_sites(context: Admin) -> SitesResponse:
    sites = sorted(context.sites.directory.sites.values(), key=lambda site: site.site_id)
    return SitesResponse(sites=[SiteView.of(site) for site in sites])


@router.post(
    "/sites",
    response_model=SiteView,
    status_code=201,
    summary="Add a site, with a new write key",
    responses={409: {"description": "The site exists"}, 422: {"description": "Bad id or host"}},
)
async def add_site(context: Admin, body: NewSite) -> SiteView:
    if body.site_id in context.sites.directory.sites:
        raise ReadRefused(409, "site_exists", f"site {body.site_id!r} exists")
    try:
        site = new_site(body.site_id, _now(), body.hosts)
    except msgspec.ValidationError as exc:
        raise ReadRefused(422, "invalid_site", str(exc)) from None
    await context.sites.put(site)
    return SiteView.of(site)


@router.put(
    "/sites/{site_id}/hosts",
    response_model=SiteView,
    summary="Replace the page hosts a site accepts events from (none: every host)",
)
async def set_hosts(context: Admin, site_id: SiteId, hosts: Annotated[Hosts, Body()]) -> SiteView:
    site = _site(context, site_id).with_hosts(hosts, _now())
    try:
        site = validated(site)
    except msgspec.ValidationError as exc:
        raise ReadRefused(422, "invalid_site", str(exc)) from None
    await context.sites.put(site)
    return SiteView.of(site)


@router.put(
    "/sites/{site_id}/privacy",
    response_model=SiteView,
    summary="Replace the site's privacy settings: cookieless ids, consent, Do Not Track",
)
async def set_privacy(context: Admin, site_id: SiteId, body: Privacy) -> SiteView:
    site = _site(context, site_id).with_privacy(
        body.cookieless, body.require_consent, body.honour_dnt, _now()
    )
    await context.sites.put(site)
    return SiteView.of(site)


@router.post(
    "/sites/{site_id}/write-key",
    response_model=SiteView,
    summary="Rotate the site's write key: the new key replaces every previous one",
)
async def rotate_write_key(context: Admin, site_id: SiteId) -> SiteView:
    site = _site(context, site_id).with_write_key(new_write_key(), _now())
    await context.sites.put(site)
    return SiteView.of(site)


@router.post(
    "/sites/{site_id}/tokens",
    response_model=IssuedToken,
    status_code=201,
    summary="Issue a read token for the site (shown once)",
)
async def add_token(context: Admin, site_id: SiteId, body: NewToken | None = None) -> IssuedToken:
    name = body.name if body else ""
    minted: MintedToken = mint_read_token(name, _now())
    await context.sites.put(_site(context, site_id).with_token(minted.record, _now()))
    return IssuedToken(
        site_id=site_id, token_id=minted.record.token_id, name=name, token=minted.token
    )


@router.delete(
    "/sites/{site_id}/tokens/{token_id}",
    status_code=204,
    summary="Revoke a read token: it stops working at once on this process, within seconds "
    "on every other",
)
async def revoke_token(
    context: Admin, site_id: SiteId, token_id: Annotated[str, Path(max_length=64)]
) -> None:
    site = _site(context, site_id)
    if all(token.token_id != token_id for token in site.read_tokens):
        raise ReadRefused(404, "unknown_token", f"site {site_id!r} has no token {token_id!r}")
    await context.sites.put(site.without_token(token_id, _now()))


@customers.delete(
    "/customers/{customer_id}",
    response_model=ErasureStatus,
    status_code=202,
    summary="Erase a customer (GDPR art. 17): them and every id linked to them, from every "
    "table and from the sessionizer's state",
    description="Answers at once with the erasure's id; `GET /api/v1/admin/erasures/{id}` says "
    "when it is complete. Events that arrive for the customer afterwards start a new, unlinked "
    "history.",
    responses={404: {"description": "Unknown site"}},
)
async def erase_customer(
    context: Admin,
    site: Annotated[str, Query(min_length=1, max_length=200)],
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> ErasureStatus:
    if site not in context.sites.directory.site_ids:
        raise ReadRefused(404, "unknown_site", f"no site {site!r}")
    if context.eraser is None:
        raise ReadRefused(503, "erasure_unavailable", "this process cannot erase")
    return await context.eraser.erase(site, context.customer_key(site, customer_id))


@router.get(
    "/erasures/{erasure_id}",
    response_model=ErasureStatus,
    summary="An erasure's state: pending, complete (with the time it took) or failed",
    responses={404: {"description": "No such erasure"}},
)
async def erasure(context: Admin, erasure_id: Annotated[str, Path(max_length=64)]) -> ErasureStatus:
    status = await asyncio.to_thread(ErasureLog(context.warehouse).get, erasure_id)
    if status is None:
        raise ReadRefused(404, "unknown_erasure", f"no erasure {erasure_id!r}")
    return status
