"""A service asked to stop that does not says what it waits for."""

from __future__ import annotations

import asyncio
import logging

import pytest

from klantreis.cli import report_a_slow_stop


async def test_a_stop_that_takes_too_long_logs_where_every_task_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    stuck = asyncio.create_task(asyncio.Event().wait(), name="a-commit-that-never-ends")
    watchdog = asyncio.create_task(report_a_slow_stop(stop, after=0.01))
    await asyncio.sleep(0.05)
    assert not caplog.records  # nothing before the signal
    with caplog.at_level(logging.ERROR):
        stop.set()
        await watchdog
    stuck.cancel()
    assert "still stopping" in caplog.text
    assert "a-commit-that-never-ends" in caplog.text
