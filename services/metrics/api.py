"""The read API (`/api/v1/...`): what dashboards and scripts ask of the warehouse."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from klantreis.config import Settings
from klantreis.phases import PhaseModel
from services.metrics import queries
from services.metrics.queries import TimelineStep
from services.metrics.warehouse import Warehouse


@dataclass(frozen=True)
class ReadContext:
    settings: Settings
    warehouse: Warehouse
    model: PhaseModel


class PhaseCount(BaseModel):
    phase: str
    journeys: int


class FunnelResponse(BaseModel):
    site: str
    model: str
    phases: list[PhaseCount]


class CustomerJourneyResponse(BaseModel):
    site: str
    customer_id: str
    identities: list[str]
    first_touch: TimelineStep | None
    furthest_phase: str | None
    current_phase: str | None
    steps: list[TimelineStep]


router = APIRouter(prefix="/api/v1")


def _unknown_site(context: ReadContext, site: str) -> JSONResponse | None:
    if site in context.settings.site_ids:
        return None
    return JSONResponse(
        {"error": "unknown_site", "message": f"no site {site!r} is configured"},
        status_code=404,
    )


@router.get(
    "/funnel",
    response_model=FunnelResponse,
    summary="Journeys that reached each phase",
    responses={404: {"description": "Unknown site"}},
)
async def funnel(
    request: Request, site: Annotated[str, Query(min_length=1, max_length=200)]
) -> FunnelResponse | JSONResponse:
    context: ReadContext = request.app.state.read
    if (refusal := _unknown_site(context, site)) is not None:
        return refusal
    reach = await asyncio.to_thread(queries.phase_funnel, context.warehouse, site, context.model)
    return FunnelResponse(
        site=site,
        model=context.model.name,
        phases=[PhaseCount(phase=r.phase, journeys=r.journeys) for r in reach],
    )


@router.get(
    "/customers/{customer_id}/journey",
    response_model=CustomerJourneyResponse,
    summary="One customer's journey, with the history of every device and id they logged in from",
    responses={404: {"description": "Unknown site, or no journey for this customer"}},
)
async def customer_journey(
    request: Request,
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    site: Annotated[str, Query(min_length=1, max_length=200)],
) -> CustomerJourneyResponse | JSONResponse:
    context: ReadContext = request.app.state.read
    if (refusal := _unknown_site(context, site)) is not None:
        return refusal
    journey = await asyncio.to_thread(
        queries.customer_journey, context.warehouse, site, customer_id
    )
    if not journey.steps:
        return JSONResponse(
            {"error": "unknown_customer", "message": f"no journey for {customer_id!r}"},
            status_code=404,
        )
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


class DropoffResponse(BaseModel):
    site: str
    model: str
    phases: list[PhaseDropoffCount]


@router.get(
    "/dropoff",
    response_model=DropoffResponse,
    summary="Per phase: customers who reached it, who dropped off there, and the rate",
    responses={404: {"description": "Unknown site"}},
)
async def dropoff(
    request: Request, site: Annotated[str, Query(min_length=1, max_length=200)]
) -> DropoffResponse | JSONResponse:
    context: ReadContext = request.app.state.read
    if (refusal := _unknown_site(context, site)) is not None:
        return refusal
    phases = await asyncio.to_thread(queries.dropoff, context.warehouse, site, context.model)
    return DropoffResponse(
        site=site,
        model=context.model.name,
        phases=[
            PhaseDropoffCount(phase=p.phase, reached=p.reached, dropped=p.dropped, rate=p.rate)
            for p in phases
        ],
    )


class MetricsResponse(BaseModel):
    site: str
    sessions: int
    conversion_rate: float
    bounce_rate: float
    cart_abandonment_rate: float
    repeat_purchase_rate: float
    carts_abandoned: int
    buyers: int
    repeat_buyers: int


@router.get(
    "/metrics",
    response_model=MetricsResponse,
    summary="The shop's metrics: conversion, bounce, cart abandonment and repeat purchase rates",
    responses={404: {"description": "Unknown site"}},
)
async def metrics(
    request: Request, site: Annotated[str, Query(min_length=1, max_length=200)]
) -> MetricsResponse | JSONResponse:
    context: ReadContext = request.app.state.read
    if (refusal := _unknown_site(context, site)) is not None:
        return refusal
    m = await asyncio.to_thread(queries.shop_metrics, context.warehouse, site, context.model)
    return MetricsResponse(
        site=site,
        sessions=m.sessions,
        conversion_rate=m.conversion_rate,
        bounce_rate=m.bounce_rate,
        cart_abandonment_rate=m.cart_abandonment_rate,
        repeat_purchase_rate=m.repeat_purchase_rate,
        carts_abandoned=m.carts_abandoned,
        buyers=m.buyers,
        repeat_buyers=m.repeat_buyers,
    )
