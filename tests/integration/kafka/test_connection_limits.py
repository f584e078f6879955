"""The collector with a container's file limit (1,024) stays usable while 2,000 connections sit
idle and 500 send their headers a byte at a time: idle and trickling connections are shed or
time out, and a new visitor's request is answered."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx

from contracts.settings import Settings
from tests.support.pipeline import WRITE_KEY
from tests.support.processes import collector

IDLE = 2000
SLOW_HEADERS = 500


async def hold_idle(host: str, port: int) -> asyncio.StreamWriter | None:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None  # refused or dropped: the collector shed it before it was accepted
    return writer


async def trickle_headers(host: str, port: int, stop: asyncio.Event) -> None:
    """A request whose headers never finish: one byte a second."""
    try:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: collector\r\n")
        while not stop.is_set():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(1)
    except OSError:
        return  # closed by the collector: what it should do with such a request
    finally:
        with contextlib.suppress(UnboundLocalError, OSError):
            writer.close()


async def answered_within(
    seconds: float, call: Coroutine[Any, Any, httpx.Response]
) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = await asyncio.wait_for(call, timeout=seconds)
    return time.monotonic() - started, response


async def test_idle_and_slow_connections_leave_the_collector_answering(
    settings: Settings, tmp_path: Path
) -> None:
    with collector(
        settings,
        tmp_path,
        file_limit=1024,
        KLANTREIS_HEADER_TIMEOUT_SECONDS="3",
        KLANTREIS_BODY_TIMEOUT_SECONDS="2",
    ) as base:
        host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
        stop = asyncio.Event()
        idle = [w for w in await asyncio.gather(*(hold_idle(host, port) for _ in range(IDLE))) if w]
        slow = [asyncio.create_task(trickle_headers(host, port, stop)) for _ in range(SLOW_HEADERS)]
        await asyncio.sleep(0.5)  # every slow connection has begun its headers
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                health_time, health = await answered_within(1.0, client.get("/healthz"))
                event = [{"type": "page", "anonymous_id": "v-1", "event_id": str(uuid.uuid4())}]
                post = client.post("/v1/events", json=event, auth=(WRITE_KEY, ""))
                event_time, stored = await answered_within(1.0, post)
            print(
                f"\n{IDLE} idle + {SLOW_HEADERS} slow-header connections at a file limit of "
                f"1024: /healthz in {health_time * 1000:.0f} ms, an event in "
                f"{event_time * 1000:.0f} ms"
            )
            assert health.status_code == 200
            assert stored.status_code == 200, stored.text

            # A connection that sends nothing is closed with a 408 after the header timeout.
            reader, writer = await asyncio.open_connection(host, port)
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer

            # So is one whose body trickles in after its headers.
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Type: "
                b"application/json\r\nContent-Length: 100\r\n\r\n["
            )
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer
        finally:
            stop.set()
            for writer in idle:
                writer.close()
            await asyncio.gather(*slow)
