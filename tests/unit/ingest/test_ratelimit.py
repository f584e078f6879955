from __future__ import annotations

from services.ingest.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_holds() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=20, clock=clock)
    assert all(buckets.take("ip") == 0 for _ in range(20))
    assert buckets.take("ip") == 0.1  # one token refills in a tenth of a second
    clock.now = 0.1
    assert buckets.take("ip") == 0
    assert buckets.take("other-ip") == 0  # keys do not share a bucket


def test_a_cost_takes_that_many_tokens_and_reports_the_wait() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=100, burst=500, clock=clock)
    assert buckets.take("site", cost=450) == 0
    assert buckets.take("site", cost=100) == 0.5
    clock.now = 0.5
    assert buckets.take("site", cost=100) == 0


def test_a_rate_of_zero_turns_limiting_off() -> None:
    buckets = TokenBuckets(rate=0, burst=0)
    assert all(buckets.take("ip") == 0 for _ in range(1000))


def test_memory_stays_bounded_by_forgetting_refilled_buckets() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock, max_keys=100)
    for i in range(100):
        buckets.take(f"ip-{i}")
    clock.now = 5  # all refilled
    buckets.take("newcomer")
    assert len(buckets._buckets) == 1
