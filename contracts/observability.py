"""Prometheus exposition and the operators' port shared by every service's HTTP surface."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PROBES = frozenset({"/healthz", "/readyz"})


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class OperatorsPort:
    """Serves `operator_paths` (metrics, and what else tells about the service itself) only to
    requests that came in on `port`, and only those paths and the probes there.

    The series of `/metrics` name sites with their traffic; on a public port anyone could read
    them. A separate port is what a scrape job and a kubelet reach and a load balancer does
    not, so no token has to be handed to Prometheus.
    """

    def __init__(self, app: ASGIApp, port: int, operator_paths: Collection[str]) -> None:
        self.app, self.port, self.operator_paths = app, port, frozenset(operator_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_operators_port = server is not None and server[1] == self.port
            path = scope["path"]
            allowed = (
                path in self.operator_paths or path in PROBES
                if on_operators_port
                else path not in self.operator_paths
            )
            if not allowed:
                await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)
