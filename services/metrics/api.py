"""The read API (`/api/v1/...`): what dashboards and scripts ask of the warehouse.

Every figure comes from `services.metrics.queries`; this module only turns requests into calls
and answers into JSON. Date ranges are whole UTC days, `date_from` to `date_to` inclusive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
from services.metrics.filters import Filters
from services.metrics.funnel import FunnelOrder, FunnelStep, PhaseReach, StepReach
from services.metrics.queries import (
    BreakdownRow,
    DateRange,
    DayFigures,
    JourneyMap,
    PeriodSteps,
    PhaseDropoff,
    RecentSignal,
    ShopMetrics,
    StoppedThen,
    TimelineStep,
    TouchpointCredit,
)
from services.metrics.warehouse import Warehouse

DEFAULT_DAYS = 30
SIGNALS_LOOKBACK = timedelta(hours=24)
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


_FILTER = "Count only the visits that "


def _filters(
    channel: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description=_FILTER + "came in through this channel"),
    ] = None,
    device: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description=_FILTER + "were on this device: desktop, mobile, tablet, unknown",
        ),
    ] = None,
    campaign: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description=_FILTER + "landed with this `utm_campaign`",
        ),
    ] = None,
    segment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description=_FILTER + "were a journey's first (`new`) or a later one (`returning`), "
            "or that belong to a segment of the shop's own: `key:value`, an event property or a "
            "user trait as of each event (e.g. `ab_bucket:test`, `plan:pro`)",
        ),
    ] = None,
) -> Filters:
    """The visits every figure counts (docs/event-api.md, "Filters")."""
    try:
        return Filters(channel=channel, device=device, campaign=campaign, segment=segment)
    except ValueError as exc:
        raise ReadRefused(422, "invalid_filter", str(exc)) from exc


def _exact_filters(filters: Annotated[Filters, Depends(_filters)], exact: Exact = True) -> Filters:
    """Figures from the daily aggregates (`exact=false`) are kept per day, not per selection of
    visits: they take no filter."""
    if filters and not exact:
        raise ReadRefused(
            422, "invalid_filter", "filters apply to exact figures; leave out exact=false"
        )
    return filters


Context = Annotated[ReadContext, Depends(_read_context)]
Filtering = Annotated[Filters, Depends(_filters)]
ExactFiltering = Annotated[Filters, Depends(_exact_filters)]
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
    filters: dict[str, str]
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
    context: Context, site: Site, days: ExactDays, filters: ExactFiltering, exact: Exact = True
) -> FunnelResponse:
    if exact:
        reach = await _ask(
            queries.phase_funnel, context.warehouse, site, context.model, days, filters
        )
    else:
        reach = await _ask(
            queries.recorded_phase_funnel, context.warehouse, site, context.model, days
        )
    return FunnelResponse(
        site=site,
        model=context.model.name,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        filters=filters.given,
        phases=reach,
    )


Steps = Annotated[list[str], Query(min_length=2, max_length=20, description="In order")]
Window = Annotated[str, Query(description="Conversion window: 30m, 1h, 14d, 2w")]


class StepFunnelResponse(BaseModel):
    site: str
    order: FunnelOrder
    window_seconds: float
    date_from: date
    date_to: date
    filters: dict[str, str]
    steps: list[StepReach]
    stopped_then: list[StoppedThen] = Field(
        description="Ordered funnels: per step people stopped at, the track events other than "
        "the steps that most of them did within the window after they began (up to 3 a step)"
    )


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
    step: Steps,
    filters: Filtering,
    order: FunnelOrder = FunnelOrder.ORDERED,
    window: Window = "14d",
) -> StepFunnelResponse:
    try:
        steps = [FunnelStep.parse(text) for text in step]
        conversion_window = parse_duration(window)
        result = await _ask(
            queries.step_funnel,
            context.warehouse,
            site,
            steps,
            order,
            conversion_window,
            days,
            filters,
        )
    except ValueError as exc:
        raise ReadRefused(422, "invalid_funnel", str(exc)) from exc
    return StepFunnelResponse(
        site=site,
        order=order,
        window_seconds=conversion_window.total_seconds(),
        date_from=days.first,
        date_to=days.last,
        filters=filters.given,
        steps=result.steps,
        stopped_then=result.stopped_then,
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
    filters: dict[str, str]
    phases: list[PhaseDropoff]


@router.get(
    "/dropoff",
    response_model=DropoffResponse,
    summary="Per phase: who reached it, who dropped off there, the rate, and after which "
    "touchpoint",
    responses=UNKNOWN_SITE,
)
async def dropoff(
    context: Context, site: Site, days: ExactDays, filters: ExactFiltering, exact: Exact = True
) -> DropoffResponse:
    if exact:
        phases = await _ask(queries.dropoff, context.warehouse, site, context.model, days, filters)
    else:
        phases = await _ask(queries.recorded_dropoff, context.warehouse, site, context.model, days)
    return DropoffResponse(
        site=site,
        model=context.model.name,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        filters=filters.given,
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
async def metrics(
    context: Context, site: Site, days: OptionalDays, filters: Filtering
) -> ShopMetrics:
    timeout = timedelta(minutes=context.settings.session_timeout_minutes)
    return await _ask(
        queries.shop_metrics, context.warehouse, site, context.model, days, timeout, filters
    )


class TouchpointsResponse(BaseModel):
    site: str
    date_from: date | None
    date_to: date | None
    filters: dict[str, str]
    touchpoints: list[TouchpointCredit]


@router.get(
    "/touchpoints",
    response_model=TouchpointsResponse,
    summary="Touchpoint effectiveness: journeys that moved to each phase, credited to the "
    "touchpoint and channel that moved them (last touch) and that began them (first touch)",
    responses=UNKNOWN_SITE,
)
async def touchpoints(
    context: Context, site: Site, days: ExactDays, filters: ExactFiltering, exact: Exact = True
) -> TouchpointsResponse:
    if exact:
        rows = await _ask(
            queries.touchpoints, context.warehouse, site, context.model, days, filters
        )
    else:
        rows = await _ask(
            queries.recorded_touchpoints, context.warehouse, site, context.model, days
        )
    return TouchpointsResponse(
        site=site,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        filters=filters.given,
        touchpoints=rows,
    )


Grain = Annotated[
    str, Query(pattern="^(day|week)$", description="Per day, or per week from date_from")
]


class TrendsResponse(BaseModel):
    site: str
    grain: str
    date_from: date
    date_to: date
    filters: dict[str, str]
    days: list[DayFigures]


@router.get(
    "/trends",
    response_model=TrendsResponse,
    summary="Per day or week: sessions, engaged and converting sessions, and journeys by how "
    "far they got in it (the last 30 days unless a range is given)",
    description="Read from the daily aggregates; journeys are counted as recorded, before an "
    "anonymous journey is folded into the customer who later claimed it.",
    responses=UNKNOWN_SITE,
)
async def trends(
    context: Context,
    site: Site,
    days: RecentDays,
    filters: Filtering,
    grain: Grain = "day",
) -> TrendsResponse:
    figures = await _ask(
        queries.trends, context.warehouse, site, context.model, days, filters, grain
    )
    return TrendsResponse(
        site=site,
        grain=grain,
        date_from=days.first,
        date_to=days.last,
        filters=filters.given,
        days=figures,
    )


class BreakdownResponse(BaseModel):
    site: str
    by: str
    date_from: date
    date_to: date
    filters: dict[str, str]
    rows: list[BreakdownRow]
    estimated: list[str] = Field(
        description="The rows' fields that are estimates (within about 1 %), not exact counts: "
        "people and page views per device come from distinct-count estimates of event and "
        "person ids; every other count is exact."
    )


@router.get(
    "/breakdown",
    response_model=BreakdownResponse,
    summary="The phase funnel by channel, campaign or segment (new or returning, or the shop's "
    "own) with sessions and conversion, or by device with people and page views; the last 30 "
    "days unless a range is given",
    responses=UNKNOWN_SITE,
)
async def breakdown(
    context: Context,
    site: Site,
    days: RecentDays,
    filters: Filtering,
    by: Annotated[
        str,
        Query(
            pattern=r"^(channel|device|segment|campaign|segment:[A-Za-z0-9_.$-]{1,64})$",
            description="channel, device, segment (new or returning), campaign, or "
            "segment:<key> for a segment of the shop's own (an event property or user trait)",
        ),
    ] = "channel",
) -> BreakdownResponse:
    rows = await _ask(queries.breakdown, context.warehouse, site, context.model, by, days, filters)
    return BreakdownResponse(
        site=site,
        by=by,
        date_from=days.first,
        date_to=days.last,
        filters=filters.given,
        rows=rows,
        estimated=["people", "page_views"] if by == "device" and not filters else [],
    )


class StepTrendsResponse(BaseModel):
    site: str
    order: FunnelOrder
    window_seconds: float
    grain: str
    date_from: date
    date_to: date
    filters: dict[str, str]
    periods: list[PeriodSteps]


@router.get(
    "/funnels/steps/trend",
    response_model=StepTrendsResponse,
    summary="A custom step funnel per day or week: the conversion of each step over time",
    description="Per period, the step funnel of the people who did the first step in it (as "
    "`/funnels/steps` asked for that period alone), so an incident at one step shows as a dip "
    "on the days it lasted.",
    responses=UNKNOWN_SITE | {422: {"description": "Invalid steps, window or range"}},
)
async def step_trend(
    context: Context,
    site: Site,
    days: RecentDays,
    step: Steps,
    filters: Filtering,
    order: FunnelOrder = FunnelOrder.ORDERED,
    window: Window = "14d",
    grain: Grain = "day",
) -> StepTrendsResponse:
    try:
        steps = [FunnelStep.parse(text) for text in step]
        conversion_window = parse_duration(window)
        periods = await _ask(
            queries.step_trends,
            context.warehouse,
            site,
            steps,
            order,
            conversion_window,
            days,
            grain,
            filters,
        )
    except ValueError as exc:
        raise ReadRefused(422, "invalid_funnel", str(exc)) from exc
    return StepTrendsResponse(
        site=site,
        order=order,
        window_seconds=conversion_window.total_seconds(),
        grain=grain,
        date_from=days.first,
        date_to=days.last,
        filters=filters.given,
        periods=periods,
    )


class JourneyMapResponse(BaseModel):
    site: str
    model: str
    phases: list[str]
    date_from: date | None
    date_to: date | None
    filters: dict[str, str]
    map: JourneyMap


@router.get(
    "/journey-map",
    response_model=JourneyMapResponse,
    summary="The journey map from data: per phase, the touchpoints that brought journeys in, "
    "the flows between them and the exits",
    description="Journeys are counted as recorded (an anonymous journey a customer claimed "
    "later counts apart), each once per cell.",
    responses=UNKNOWN_SITE,
)
async def journey_map(
    context: Context, site: Site, days: OptionalDays, filters: Filtering
) -> JourneyMapResponse:
    drawn = await _ask(queries.journey_map, context.warehouse, site, context.model, days, filters)
    return JourneyMapResponse(
        site=site,
        model=context.model.name,
        phases=list(context.model.phases),
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        filters=filters.given,
        map=drawn,
    )


class CellJourneysResponse(BaseModel):
    site: str
    phase: str
    touchpoint: str
    journeys: list[str]


@router.get(
    "/journey-map/journeys",
    response_model=CellJourneysResponse,
    summary="The journeys behind a cell of the journey map, the latest arrivals first",
    responses=UNKNOWN_SITE,
)
async def cell_journeys(
    context: Context,
    site: Site,
    days: OptionalDays,
    filters: Filtering,
    phase: Annotated[str, Query(min_length=1, max_length=200)],
    touchpoint: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CellJourneysResponse:
    journeys = await _ask(
        queries.journeys_in_cell,
        context.warehouse,
        site,
        phase,
        touchpoint,
        days,
        filters,
        limit,
    )
    return CellJourneysResponse(site=site, phase=phase, touchpoint=touchpoint, journeys=journeys)


class SignalsResponse(BaseModel):
    site: str
    filters: dict[str, str]
    signals: list[RecentSignal]


@router.get(
    "/signals",
    response_model=SignalsResponse,
    summary="The newest signals (cart abandoned, dropped off, phase reached, returned, repeat "
    "purchase), newest first; `after` asks for those since the last answer",
    responses=UNKNOWN_SITE,
)
async def signals(
    context: Context,
    site: Site,
    filters: Filtering,
    after: Annotated[
        datetime | None,
        Query(description="Only signals after this instant (default: the last 24 hours)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SignalsResponse:
    if after is None:  # what is live: the last day, which keeps the read to one or two days
        after = datetime.now(UTC) - SIGNALS_LOOKBACK
    elif after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    newest = await _ask(queries.recent_signals, context.warehouse, site, after, filters, limit)
    return SignalsResponse(site=site, filters=filters.given, signals=newest)


class CallerResponse(BaseModel):
    kind: str = Field(description="`reader` (a site's read token) or `admin`")
    site: str | None = Field(description="The site a read token reads; None for the admin")


@router.get(
    "/whoami",
    response_model=CallerResponse,
    summary="Whom the token names: the dashboard asks which site to show",
    responses={401: {"description": "No token, or one that is not valid"}},
)
async def whoami(reader: Who) -> CallerResponse:
    return CallerResponse(kind=reader.kind, site=reader.site_id)
