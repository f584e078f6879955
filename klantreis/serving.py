"""The HTTP servers' edge: bounded connections and bounded time to send a request.

uvicorn closes a keep-alive connection only after a response, so a connection that never sends
a request, or sends its headers or body a byte at a time, stays open until the client gives up,
and each holds a file descriptor. With the file limit a container usually gets (1,024), a
thousand idle sockets leave the server unable to accept anything. The protocol here adds what
uvicorn lacks:

- the headers of a request must arrive within ``header_timeout`` of the connection opening (or
  of the request's first byte on a kept-alive connection), the body within ``body_timeout`` of
  the headers; otherwise the connection closes, with a 408 where no response has begun;
- at most ``max_connections`` connections are open (by default three quarters of the file
  limit, so the server never runs out of descriptors). A connection beyond it closes the
  longest-waiting connection that has not sent a whole request yet; when every connection is
  busy with a request, the new one gets an immediate 503 instead.

A request that has arrived is never cut short by a newcomer, so ``/healthz`` and real traffic
are answered while idle and trickling connections are shed.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contracts.settings import Settings

# Descriptors a process keeps for itself besides connections: Kafka, files, the event loop.
_RESERVED_DESCRIPTORS = 64

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 23\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\r\n"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 34\r\nconnection: close\r\n\r\nthe request did not arrive in time"
)


def default_max_connections() -> int:
    """Three quarters of the soft file limit, keeping a reserve for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, min(soft * 3 // 4, soft - _RESERVED_DESCRIPTORS))


@dataclass
class ConnectionGuard:
    """The open connections of one server, and which of them may be shed."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    open: set[GuardedProtocol] = field(default_factory=set)
    # Connections without a whole request yet, longest waiting first.
    waiting: OrderedDict[GuardedProtocol, None] = field(default_factory=OrderedDict)
    refused: int = 0
    shed: int = 0
    timed_out: int = 0

    def admit(self, newcomer: GuardedProtocol) -> bool:
        """Make room for a new connection; False when every open one is serving a request."""
        while len(self.open) >= self.max_connections:
            if not self.waiting:
                self.refused += 1
                return False
            oldest, _ = self.waiting.popitem(last=False)
            self.shed += 1
            oldest.drop()
        self.open.add(newcomer)
        return True

    def release(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's deadlines and admission."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit(self):
            transport.write(_REFUSAL)
            transport.close()
            self.transport = transport
            return
        self._admitted = True
        super().connection_made(transport)
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if not self._admitted:
            return
        self.guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._await_request()

    def on_headers_complete(self) -> None:
        # The request has arrived: it is served, and only its body is still awaited.
        self.guard.waiting.pop(self, None)
        self._set_deadline(self.guard.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # Idle on keep-alive until the next request: uvicorn's keep-alive timer runs, and
            # the connection may be shed for a newcomer meanwhile.
            self.guard.waiting[self] = None

    def _await_request(self) -> None:
        self.guard.waiting[self] = None
        self.guard.waiting.move_to_end(self)
        self._set_deadline(self.guard.header_timeout)

    def _set_deadline(self, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._time_out)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _time_out(self) -> None:
        self._deadline = None
        self.guard.timed_out += 1
        if self.transport.is_closing():
            return
        responding = self.cycle is not None and self.cycle.response_started
        if not responding:
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    def drop(self) -> None:
        """Shed for a newcomer: nothing of a request has been answered on it."""
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.close()


def guarded(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """The protocol class of one server, bound to that server's guard."""
    return type("Guarded", (GuardedProtocol,), {"guard": guard})


def listening_sockets(host: str, *ports: int) -> list[socket.socket]:
    """Bound sockets for every port given (0s left out), so one server, one app and one stop
    serve the public port and the operators' port alike."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return [socket.create_server((host, port), family=family) for port in ports if port]


def guard_of(settings: Settings) -> ConnectionGuard:
    return ConnectionGuard(
        max_connections=settings.max_connections or default_max_connections(),
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
    )


def server_config(app: Any, settings: Settings, port: int) -> uvicorn.Config:
    """How every klantreis HTTP server runs: guarded, no access log (it would hold client
    addresses and `?token=` links), a bounded graceful stop."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        http=guarded(guard_of(settings)),
        log_level="info",
        access_log=False,
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        timeout_graceful_shutdown=10,
    )
