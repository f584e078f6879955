"""The read API (`/api/v1/...`): what dashboards and scripts ask of the warehouse.

Every figure comes from `services.metrics.queries`; this module only turns requests into calls
and answers into JSON. Date ranges are whole UTC days, `date_from` to `date_to` inclusive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from contracts.phases import PhaseModel, parse_duration
from contracts.pseudonyms import Pseudonyms
from contracts.settings import Settings
from contracts.sitestore import SiteStore
from services.metrics import queries
from services.metrics.access import Caller, ReadRefused, authorize_read, identify, presented_token
from services.metrics.erasure import Eraser
from services.metrics.funnel import FunnelOrder, FunnelStep, PhaseReach, StepReach
from services.metrics.queries import (
    BreakdownRow,
    DateRange,
    DayFigures,
    PhaseDropoff,
    ShopMetrics,
    TimelineStep,
    TouchpointCredit,
)
from services.metrics.warehouse import Warehouse

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class ReadContext:
    """What the read API works with: the warehouse, the sites (for their tokens), the digest of
    the admin token, the pseudonyms of customer ids (when they are pseudonymous), and the way
    this process erases a customer."""

    settings: Settings
    warehouse: Warehouse
    model: PhaseModel
    sites: SiteStore
    admin_digest: str
    pseudonyms: Pseudonyms | None = None
    eraser: Eraser | None = None

    def customer_key(self, site_id: str, customer_id: str) -> str:
        """The id a customer's rows carry: theirs, or its pseudonym when ids are pseudonymous
        (the caller asks by the id they know)."""
        if self.pseudonyms is None:
            return customer_id
        return self.pseudonyms.of(site_id, customer_id)


_BEARER = HTTPBearer(
    auto_error=False,
    description="A read token of the site (`kr_read_…`), or the admin token. A browser link "
    "may carry it as the `token` query parameter instead.",
)
_T = TypeVar("_T")


def caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    token: Annotated[
        str | None, Query(max_length=512, description="The token, for links a browser opens")
    ] = None,
) -> Caller:
    """The caller the request's token names (401 without a valid one)."""
    context: ReadContext = request.app.state.read
    presented = presented_token(request.headers.get("authorization"), token)
    return identify(presented, context.sites.directory, context.admin_digest)


Who = Annotated[Caller, Depends(caller)]  # the caller, once per request
router = APIRouter(prefix="/api/v1", dependencies=[Depends(caller)])
UNKNOWN_SITE: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token, or one that is not valid"},
    403: {"description": "A token of another site, or a write key"},
    404: {"description": "Unknown site"},
}


def date_range(
    date_from: date | None, date_to: date | None, default_days: int | None
) -> DateRange | None:
    """The requested whole UTC days; without either bound, the last `default_days` (None: all
    time). The read API and `klantreis report` take ranges by these rules."""
    if date_from is None and date_to is None:
        return None if default_days is None else DateRange.last_days(default_days)
    last = date_to or DateRange.last_days(1).last
    first = date_from or last - timedelta(days=(default_days or DEFAULT_DAYS) - 1)
    if last < first:
        raise ReadRefused(422, "invalid_range", f"date_to {last} is before date_from {first}")
    if (last - first).days >= MAX_DAYS:
        raise ReadRefused(422, "invalid_range", f"a range spans at most {MAX_DAYS} days")
    return DateRange(first, last)


Site = Annotated[str, Query(min_length=1, max_length=200, description="The site's id")]


def _read_context(request: Request, site: Site, reader: Who) -> ReadContext:
    """The read side of this process, once the caller may read `site` and it exists."""
    context: ReadContext = request.app.state.read
    authorize_read(reader, site, context.sites.directory)
    return context


DateFrom = Annotated[date | None, Query(description="First day (UTC), inclusive")]
DateTo = Annotated[date | None, Query(description="Last day (UTC), inclusive")]
Exact = Annotated[
    bool,
    Query(
        description="true: from raw rows, a customer's devices and anonymous history folded "
        "into one journey. false: from the daily aggregates (milliseconds at any size), "
        "journeys as recorded; needs a range (default the last 30 days)."
    ),
]


def _optional_days(date_from: DateFrom = None, date_to: DateTo = None) -> DateRange | None:
    """A range where the figure allows all time: without one, all time."""
    return date_range(date_from, date_to, None)


def _recent_days(date_from: DateFrom = None, date_to: DateTo = None) -> DateRange:
    """A range where the figure needs one: without one, the last 30 days."""
    days = date_range(date_from, date_to, DEFAULT_DAYS)
    assert days is not None
    return days


def _exact_days(
    date_from: DateFrom = None, date_to: DateTo = None, exact: Exact = True
) -> DateRange | None:
    """Exact figures may span all time; those from the daily aggregates need a range."""
    return date_range(date_from, date_to, None if exact else DEFAULT_DAYS)


Context = Annotated[ReadContext, Depends(_read_context)]
OptionalDays = Annotated[DateRange | None, Depends(_optional_days)]
RecentDays = Annotated[DateRange, Depends(_recent_days)]
ExactDays = Annotated[DateRange | None, Depends(_exact_days)]


async def _ask(call: Callable[..., _T], *args: Any) -> _T:
    """Queries block (clickhouse-connect is synchronous): run them off the event loop."""
    return await asyncio.to_thread(call, *args)


class FunnelResponse(BaseModel):
    site: str
    model: str
    date_from: date | None
    date_to: date | None
    phases: list[PhaseReach]


@router.get(
    "/funnel",
    response_model=FunnelResponse,
    summary="Journeys that reached each phase",
    description="Journeys active in the range (all time without one), by how far they had got; "
    "a customer and the anonymous history they later claimed count once.",
    responses=UNKNOWN_SITE,
)
async def funnel(
    context: Context, site: Site, days: ExactDays, exact: Exact = True
) -> FunnelResponse:
    if exact:
        reach = await _ask(queries.phase_funnel, context.warehouse, site, context.model, days)
    else:
        reach = await _ask(
            queries.recorded_phase_funnel, context.warehouse, site, context.model, days
        )
    return FunnelResponse(
        site=site,
        model=context.model.name,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        phases=reach,
    )


class StepFunnelResponse(BaseModel):
    site: str
    order: FunnelOrder
    window_seconds: float
    date_from: date
    date_to: date
    steps: list[StepReach]


@router.get(
    "/funnels/steps",
    response_model=StepFunnelResponse,
    summary="A custom funnel of steps: ordered, strict or in any order, within a window",
    description="People who did the steps within `window` of the first, having done the first "
    "step in the range (later steps may fall after it, so late entrants are not lost). A step "
    "is a track event's name, `page` (any page view) or `page:/path` (that path and below). "
    "`ordered`: in order, other events between allowed; `strict`: nothing else between; "
    "`any`: every step, in any order. Anonymous history a customer claimed counts as theirs.",
    responses=UNKNOWN_SITE | {422: {"description": "Invalid steps, window or range"}},
)
async def step_funnel(
    context: Context,
    site: Site,
    days: RecentDays,
    step: Annotated[list[str], Query(min_length=2, max_length=20, description="In order")],
    order: FunnelOrder = FunnelOrder.ORDERED,
    window: Annotated[str, Query(description="Conversion window: 30m, 1h, 14d, 2w")] = "14d",
) -> StepFunnelResponse:
    try:
        steps = [FunnelStep.parse(text) for text in step]
        conversion_window = parse_duration(window)
        result = await _ask(
            queries.step_funnel, context.warehouse, site, steps, order, conversion_window, days
        )
    except ValueError as exc:
        raise ReadRefused(422, "invalid_funnel", str(exc)) from exc
    return StepFunnelResponse(
        site=site,
        order=order,
        window_seconds=conversion_window.total_seconds(),
        date_from=days.first,
        date_to=days.last,
        steps=result.steps,
    )


class CustomerJourneyResponse(BaseModel):
    site: str
    customer_id: str
    identities: list[str]
    first_touch: TimelineStep | None
    furthest_phase: str | None
    current_phase: str | None
    steps: list[TimelineStep]


@router.get(
    "/customers/{customer_id}/journey",
    response_model=CustomerJourneyResponse,
    summary="One customer's journey, with the history of every device and id they logged in from",
    responses={404: {"description": "Unknown site, or no journey for this customer"}},
)
async def customer_journey(
    context: Context,
    site: Site,
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> CustomerJourneyResponse:
    key = context.customer_key(site, customer_id)
    journey = await _ask(queries.customer_journey, context.warehouse, site, key)
    if not journey.steps:
        raise ReadRefused(404, "unknown_customer", f"no journey for {customer_id!r}")
    steps = journey.steps
    reached = [context.model.index(s.to_phase) for s in steps if s.to_phase in context.model.phases]
    return CustomerJourneyResponse(
        site=site,
        customer_id=customer_id,
        identities=journey.identities,
        first_touch=journey.first_touch,
        furthest_phase=context.model.phases[max(reached)] if reached else None,
        current_phase=steps[-1].to_phase,
        steps=steps,
    )


class DropoffResponse(BaseModel):
    site: str
    model: str
    date_from: date | None
    date_to: date | None
    phases: list[PhaseDropoff]


@router.get(
    "/dropoff",
    response_model=DropoffResponse,
    summary="Per phase: who reached it, who dropped off there, the rate, and after which "
    "touchpoint",
    responses=UNKNOWN_SITE,
)
async def dropoff(
    context: Context, site: Site, days: ExactDays, exact: Exact = True
) -> DropoffResponse:
    ask = queries.dropoff if exact else queries.recorded_dropoff
    phases = await _ask(ask, context.warehouse, site, context.model, days)
    return DropoffResponse(
        site=site,
        model=context.model.name,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        phases=phases,
    )


@router.get(
    "/metrics",
    response_model=ShopMetrics,
    summary="The shop's metrics: conversion, bounce, time on page, cart abandonment, lifetime "
    "value, satisfaction (NPS, CSAT), e-mail open rate, exit pages, repeat purchases",
    description="A rate is null when there is nothing to divide by (no sessions, no answers).",
    responses=UNKNOWN_SITE,
)
async def metrics(context: Context, site: Site, days: OptionalDays) -> ShopMetrics:
    timeout = timedelta(minutes=context.settings.session_timeout_minutes)
    return await _ask(queries.shop_metrics, context.warehouse, site, context.model, days, timeout)


class TouchpointsResponse(BaseModel):
    site: str
    date_from: date | None
    date_to: date | None
    touchpoints: list[TouchpointCredit]


@router.get(
    "/touchpoints",
    response_model=TouchpointsResponse,
    summary="Touchpoint effectiveness: journeys that moved to each phase, credited to the "
    "touchpoint and channel that moved them (last touch) and that began them (first touch)",
    responses=UNKNOWN_SITE,
)
async def touchpoints(
    context: Context, site: Site, days: ExactDays, exact: Exact = True
) -> TouchpointsResponse:
    ask = queries.touchpoints if exact else queries.recorded_touchpoints
    rows = await _ask(ask, context.warehouse, site, context.model, days)
    return TouchpointsResponse(
        site=site,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        touchpoints=rows,
    )


class TrendsResponse(BaseModel):
    site: str
    date_from: date
    date_to: date
    days: list[DayFigures]


@router.get(
    "/trends",
    response_model=TrendsResponse,
    summary="Per day: sessions, engaged and converting sessions, and journeys by how far they "
    "got that day (the last 30 days unless a range is given)",
    description="Read from the daily aggregates; journeys are counted as recorded, before an "
    "anonymous journey is folded into the customer who later claimed it.",
    responses=UNKNOWN_SITE,
)
async def trends(context: Context, site: Site, days: RecentDays) -> TrendsResponse:
    figures = await _ask(queries.trends, context.warehouse, site, context.model, days)
    return TrendsResponse(
        site=site,
        date_from=days.first,
        date_to=days.last,
        days=figures,
    )


class BreakdownResponse(BaseModel):
    site: str
    by: str
    date_from: date
    date_to: date
    rows: list[BreakdownRow]
    estimated: list[str] = Field(
        description="The rows' fields that are estimates (within about 1 %), not exact counts: "
        "people and page views per device come from distinct-count estimates of event and "
        "person ids; every other count is exact."
    )


@router.get(
    "/breakdown",
    response_model=BreakdownResponse,
    summary="The phase funnel by channel (with sessions and conversion), device (with people "
    "and page views) or segment (new or returning), the last 30 days unless a range is given",
    responses=UNKNOWN_SITE,
)
async def breakdown(
    context: Context,
    site: Site,
    days: RecentDays,
    by: Annotated[str, Query(pattern="^(channel|device|segment)$")] = "channel",
) -> BreakdownResponse:
    rows = await _ask(queries.breakdown, context.warehouse, site, context.model, by, days)
    return BreakdownResponse(
        site=site,
        by=by,
        date_from=days.first,
        date_to=days.last,
        rows=rows,
        estimated=["people", "page_views"] if by == "device" else [],
    )
