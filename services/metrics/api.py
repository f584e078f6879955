"""The read API (`/api/v1/...`): what dashboards and scripts ask of the warehouse.

Every figure comes from `services.metrics.queries`; this module only turns requests into calls
and answers into JSON. Date ranges are whole UTC days, `date_from` to `date_to` inclusive.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contracts.phases import PhaseModel, parse_duration
from contracts.settings import Settings
from services.metrics import queries
from services.metrics.funnel import FunnelOrder, FunnelStep
from services.metrics.queries import DateRange, TimelineStep
from services.metrics.warehouse import Warehouse

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class ReadContext:
    settings: Settings
    warehouse: Warehouse
    model: PhaseModel


router = APIRouter(prefix="/api/v1")
UNKNOWN_SITE: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown site"}}
Site = Annotated[str, Query(min_length=1, max_length=200, description="The site's id")]
_T = TypeVar("_T")


class _Refusal(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        self.response = JSONResponse({"error": error, "message": message}, status_code=status)


def _context(request: Request, site: str) -> ReadContext:
    context: ReadContext = request.app.state.read
    if site not in context.settings.site_ids:
        raise _Refusal(404, "unknown_site", f"no site {site!r} is configured")
    return context


def _days(date_from: date | None, date_to: date | None, default: int | None) -> DateRange | None:
    """The requested days; without either bound, the last `default` days (None: all time)."""
    if date_from is None and date_to is None:
        return None if default is None else DateRange.last_days(default)
    last = date_to or DateRange.last_days(1).last
    first = date_from or last - timedelta(days=(default or DEFAULT_DAYS) - 1)
    if last < first:
        raise _Refusal(422, "invalid_range", f"date_to {last} is before date_from {first}")
    if (last - first).days >= MAX_DAYS:
        raise _Refusal(422, "invalid_range", f"a range spans at most {MAX_DAYS} days")
    return DateRange(first, last)


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


async def _ask(call: Callable[..., _T], *args: Any) -> _T:
    """Queries block (clickhouse-connect is synchronous): run them off the event loop."""
    return await asyncio.to_thread(call, *args)


def _answer(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Let a handler refuse with `_Refusal` (404 unknown site, 422 bad range)."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except _Refusal as refusal:
            return refusal.response

    return wrapped


class PhaseCount(BaseModel):
    phase: str
    journeys: int


class FunnelResponse(BaseModel):
    site: str
    model: str
    date_from: date | None
    date_to: date | None
    phases: list[PhaseCount]


@router.get(
    "/funnel",
    response_model=FunnelResponse,
    summary="Journeys that reached each phase",
    description="Journeys active in the range (all time without one), by how far they had got; "
    "a customer and the anonymous history they later claimed count once.",
    responses=UNKNOWN_SITE,
)
@_answer
async def funnel(
    request: Request,
    site: Site,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    exact: Exact = True,
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, None if exact else DEFAULT_DAYS)
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
        phases=[PhaseCount(phase=r.phase, journeys=r.journeys) for r in reach],
    )


class StepCount(BaseModel):
    step: str
    people: int
    conversion_from_previous: float
    conversion_from_first: float


class StepFunnelResponse(BaseModel):
    site: str
    order: FunnelOrder
    window_seconds: float
    date_from: date
    date_to: date
    steps: list[StepCount]


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
@_answer
async def step_funnel(
    request: Request,
    site: Site,
    step: Annotated[list[str], Query(min_length=2, max_length=20, description="In order")],
    order: FunnelOrder = FunnelOrder.ORDERED,
    window: Annotated[str, Query(description="Conversion window: 30m, 1h, 14d, 2w")] = "14d",
    date_from: DateFrom = None,
    date_to: DateTo = None,
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, DEFAULT_DAYS)
    assert days is not None
    try:
        steps = [FunnelStep.parse(text) for text in step]
        conversion_window = parse_duration(window)
        result = await _ask(
            queries.step_funnel, context.warehouse, site, steps, order, conversion_window, days
        )
    except ValueError as exc:
        raise _Refusal(422, "invalid_funnel", str(exc)) from exc
    return StepFunnelResponse(
        site=site,
        order=order,
        window_seconds=conversion_window.total_seconds(),
        date_from=days.first,
        date_to=days.last,
        steps=[StepCount(**vars(reach)) for reach in result.steps],
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
@_answer
async def customer_journey(
    request: Request,
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    site: Site,
) -> Any:
    context = _context(request, site)
    journey = await _ask(queries.customer_journey, context.warehouse, site, customer_id)
    if not journey.steps:
        raise _Refusal(404, "unknown_customer", f"no journey for {customer_id!r}")
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


class PhaseDropoffCount(BaseModel):
    phase: str
    reached: int
    dropped: int
    rate: float
    after_touchpoints: dict[str, int]


class DropoffResponse(BaseModel):
    site: str
    model: str
    date_from: date | None
    date_to: date | None
    phases: list[PhaseDropoffCount]


@router.get(
    "/dropoff",
    response_model=DropoffResponse,
    summary="Per phase: who reached it, who dropped off there, the rate, and after which "
    "touchpoint",
    responses=UNKNOWN_SITE,
)
@_answer
async def dropoff(
    request: Request,
    site: Site,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    exact: Exact = True,
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, None if exact else DEFAULT_DAYS)
    ask = queries.dropoff if exact else queries.recorded_dropoff
    phases = await _ask(ask, context.warehouse, site, context.model, days)
    return DropoffResponse(
        site=site,
        model=context.model.name,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        phases=[
            PhaseDropoffCount(
                phase=p.phase,
                reached=p.reached,
                dropped=p.dropped,
                rate=p.rate,
                after_touchpoints=p.after_touchpoints,
            )
            for p in phases
        ],
    )


class ExitPageFigures(BaseModel):
    path: str
    exits: int
    page_views: int
    exit_rate: float


class MetricsResponse(BaseModel):
    site: str
    date_from: date | None
    date_to: date | None
    sessions: int
    conversion_rate: float | None
    bounce_rate: float | None
    average_seconds_on_page: float | None
    cart_abandonment_rate: float | None
    carts_abandoned: int
    buyers: int
    repeat_buyers: int
    repeat_purchase_rate: float | None
    orders: int
    revenue: float
    average_order_value: float | None
    customer_lifetime_value: float | None
    net_promoter_score: float | None
    nps_answers: int
    customer_satisfaction: float | None
    csat_answers: int
    emails_delivered: int
    emails_opened: int
    email_open_rate: float | None
    exit_pages: list[ExitPageFigures]


@router.get(
    "/metrics",
    response_model=MetricsResponse,
    summary="The shop's metrics: conversion, bounce, time on page, cart abandonment, lifetime "
    "value, satisfaction (NPS, CSAT), e-mail open rate, exit pages, repeat purchases",
    description="A rate is null when there is nothing to divide by (no sessions, no answers).",
    responses=UNKNOWN_SITE,
)
@_answer
async def metrics(
    request: Request, site: Site, date_from: DateFrom = None, date_to: DateTo = None
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, None)
    m = await _ask(
        queries.shop_metrics,
        context.warehouse,
        site,
        context.model,
        days,
        timedelta(minutes=context.settings.session_timeout_minutes),
    )
    return MetricsResponse(
        site=site,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        sessions=m.sessions,
        conversion_rate=m.conversion_rate,
        bounce_rate=m.bounce_rate,
        average_seconds_on_page=m.average_seconds_on_page,
        cart_abandonment_rate=m.cart_abandonment_rate,
        carts_abandoned=m.carts_abandoned,
        buyers=m.buyers,
        repeat_buyers=m.repeat_buyers,
        repeat_purchase_rate=m.repeat_purchase_rate,
        orders=m.orders,
        revenue=m.revenue,
        average_order_value=m.average_order_value,
        customer_lifetime_value=m.customer_lifetime_value,
        net_promoter_score=m.net_promoter_score,
        nps_answers=m.nps_answers,
        customer_satisfaction=m.customer_satisfaction,
        csat_answers=m.csat_answers,
        emails_delivered=m.emails_delivered,
        emails_opened=m.emails_opened,
        email_open_rate=m.email_open_rate,
        exit_pages=[
            ExitPageFigures(
                path=p.path, exits=p.exits, page_views=p.page_views, exit_rate=p.exit_rate
            )
            for p in m.exit_pages
        ],
    )


class TouchpointFigures(BaseModel):
    phase: str
    touchpoint: str
    channel: str
    last_touch: int
    first_touch: int | None


class TouchpointsResponse(BaseModel):
    site: str
    date_from: date | None
    date_to: date | None
    touchpoints: list[TouchpointFigures]


@router.get(
    "/touchpoints",
    response_model=TouchpointsResponse,
    summary="Touchpoint effectiveness: journeys that moved to each phase, credited to the "
    "touchpoint and channel that moved them (last touch) and that began them (first touch)",
    responses=UNKNOWN_SITE,
)
@_answer
async def touchpoints(
    request: Request,
    site: Site,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    exact: Exact = True,
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, None if exact else DEFAULT_DAYS)
    ask = queries.touchpoints if exact else queries.recorded_touchpoints
    rows = await _ask(ask, context.warehouse, site, context.model, days)
    return TouchpointsResponse(
        site=site,
        date_from=days.first if days else None,
        date_to=days.last if days else None,
        touchpoints=[TouchpointFigures(**vars(row)) for row in rows],
    )


class DayFigures(BaseModel):
    day: date
    sessions: int
    engaged_sessions: int
    converting_sessions: int
    journeys_by_phase: dict[str, int]


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
@_answer
async def trends(
    request: Request, site: Site, date_from: DateFrom = None, date_to: DateTo = None
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, DEFAULT_DAYS)
    assert days is not None
    figures = await _ask(queries.trends, context.warehouse, site, context.model, days)
    return TrendsResponse(
        site=site,
        date_from=days.first,
        date_to=days.last,
        days=[DayFigures(**vars(day)) for day in figures],
    )


class BreakdownFigures(BaseModel):
    value: str
    journeys_by_phase: dict[str, int]
    sessions: int | None
    converting_sessions: int | None
    conversion_rate: float | None
    people: int | None
    page_views: int | None


class BreakdownResponse(BaseModel):
    site: str
    by: str
    date_from: date
    date_to: date
    rows: list[BreakdownFigures]


@router.get(
    "/breakdown",
    response_model=BreakdownResponse,
    summary="The phase funnel by channel (with sessions and conversion), device (with people "
    "and page views) or segment (new or returning), the last 30 days unless a range is given",
    responses=UNKNOWN_SITE,
)
@_answer
async def breakdown(
    request: Request,
    site: Site,
    by: Annotated[str, Query(pattern="^(channel|device|segment)$")] = "channel",
    date_from: DateFrom = None,
    date_to: DateTo = None,
) -> Any:
    context = _context(request, site)
    days = _days(date_from, date_to, DEFAULT_DAYS)
    assert days is not None
    rows = await _ask(queries.breakdown, context.warehouse, site, context.model, by, days)
    return BreakdownResponse(
        site=site,
        by=by,
        date_from=days.first,
        date_to=days.last,
        rows=[
            BreakdownFigures(
                value=row.value,
                journeys_by_phase=row.journeys_by_phase,
                sessions=row.sessions,
                converting_sessions=row.converting_sessions,
                conversion_rate=row.conversion_rate,
                people=row.people,
                page_views=row.page_views,
            )
            for row in rows
        ],
    )
