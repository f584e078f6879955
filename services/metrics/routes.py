"""The read side's HTTP surface, mounted as one: the read API, the admin API, the dashboard at
`/`, and their refusals answered as `{"error", "message"}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.metrics import admin, api, dashboard
from services.metrics.access import ReadRefused


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ReadRefused)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": exc.error, "message": exc.message}, status_code=exc.status, headers=headers
        )

    app.add_exception_handler(ReadRefused, refused)
    app.include_router(api.router)
    app.include_router(admin.router)
    app.include_router(admin.customers)
    app.include_router(dashboard.router)
