"""The read API (`/api/v1/...`): what dashboards and scripts ask of the warehouse."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from klantreis.config import Settings
from klantreis.phases import PhaseModel
from services.metrics import queries
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


router = APIRouter(prefix="/api/v1")


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
    if site not in context.settings.site_ids:
        return JSONResponse(
            {"error": "unknown_site", "message": f"no site {site!r} is configured"},
            status_code=404,
        )
    reach = await asyncio.to_thread(queries.phase_funnel, context.warehouse, site, context.model)
    return FunnelResponse(
        site=site,
        model=context.model.name,
        phases=[PhaseCount(phase=r.phase, journeys=r.journeys) for r in reach],
    )
