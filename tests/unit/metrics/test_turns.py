"""Writes go before queued reads on the warehouse client, so dashboards cannot hold up the
inserts a collector's answer waits for."""

from __future__ import annotations

import threading
import time

from services.metrics.warehouse import Turns


def test_a_waiting_write_goes_before_readers_that_came_after_it() -> None:
    turns = Turns()
    order: list[str] = []
    first_read_runs = threading.Event()
    release_first_read = threading.Event()

    def first_reader() -> None:
        with turns.reading():
            first_read_runs.set()
            release_first_read.wait(5)
            order.append("read 1")

    def writer() -> None:
        with turns.writing():
            order.append("write")

    def later_reader(n: int) -> None:
        with turns.reading():
            order.append(f"read {n}")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    assert first_read_runs.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[-1].start()
    while not turns._writers_waiting:  # the writer is queued
        time.sleep(0.001)
    for n in (2, 3):
        threads.append(threading.Thread(target=later_reader, args=(n,)))
        threads[-1].start()
    time.sleep(0.05)  # the later readers are queued too
    release_first_read.set()
    for thread in threads:
        thread.join(5)
    assert order[:2] == ["read 1", "write"]
    assert sorted(order[2:]) == ["read 2", "read 3"]


def test_one_call_at_a_time() -> None:
    turns = Turns()
    inside: list[int] = []
    most = [0]

    def call(writes: bool) -> None:
        with turns.writing() if writes else turns.reading():
            inside.append(1)
            most[0] = max(most[0], len(inside))
            time.sleep(0.001)
            inside.pop()

    threads = [threading.Thread(target=call, args=(n % 3 == 0,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most[0] == 1
