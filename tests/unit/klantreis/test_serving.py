"""Which connection makes room for a newcomer when a server is full."""

from __future__ import annotations

import resource
from typing import cast

import pytest

from klantreis.serving import ConnectionGuard, GuardedProtocol, default_max_connections


class Connection:
    def __init__(self, guard: ConnectionGuard, name: str) -> None:
        self.guard, self.name, self.dropped = guard, name, False

    def drop(self) -> None:
        self.dropped = True
        self.guard.release(cast(GuardedProtocol, self))


def connect(guard: ConnectionGuard, name: str, waiting: bool = True) -> Connection | None:
    connection = Connection(guard, name)
    if not guard.admit(cast(GuardedProtocol, connection)):
        return None
    if waiting:
        guard.waiting[cast(GuardedProtocol, connection)] = None
    return connection


def test_a_newcomer_sheds_the_connection_waiting_longest() -> None:
    guard = ConnectionGuard(max_connections=3, header_timeout=10, body_timeout=30)
    first, second, third = (connect(guard, name) for name in ("first", "second", "third"))
    fourth = connect(guard, "fourth")
    assert fourth is not None and first is not None and first.dropped
    assert second is not None and not second.dropped
    assert third is not None and not third.dropped
    assert len(guard.open) == 3 and guard.shed == 1


def test_connections_serving_a_request_are_never_shed() -> None:
    guard = ConnectionGuard(max_connections=2, header_timeout=10, body_timeout=30)
    busy = [connect(guard, f"busy-{n}", waiting=False) for n in range(2)]
    assert connect(guard, "newcomer") is None
    assert guard.refused == 1 and not any(c is not None and c.dropped for c in busy)


def test_the_default_keeps_descriptors_in_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    for soft, expected in ((1024, 768), (200, 136), (65536, 49152)):
        monkeypatch.setattr(resource, "getrlimit", lambda _, soft=soft: (soft, soft))
        assert default_max_connections() == expected
