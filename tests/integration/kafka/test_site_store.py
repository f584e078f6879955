"""The sites topic on the real broker: every process that follows it sees the same sites and
the same day's cookieless salt, and an old salt is destroyed for all of them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime

from contracts.settings import Settings
from contracts.sites import new_site
from contracts.sitestore import KafkaSiteStore, seed_of
from tests.support.pipeline import SITE


async def until(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_two_followers_share_sites_and_salts(settings: Settings) -> None:
    async with KafkaSiteStore(settings, seed_of(settings)) as first:
        async with KafkaSiteStore(settings, seed_of(settings)) as second:
            assert first.directory.site_ids == second.directory.site_ids == {SITE}
            await first.put(new_site("boutique", datetime.now(UTC)))
            await until(lambda: "boutique" in second.directory.site_ids)

            monday = await first.salt_of(date(2026, 12, 7))
            await until(lambda: date(2026, 12, 7) in second.salt_days)
            assert await second.salt_of(date(2026, 12, 7)) == monday
            tuesday = await second.salt_of(date(2026, 12, 8))
            await until(lambda: date(2026, 12, 7) not in first.salt_days)
            assert await first.salt_of(date(2026, 12, 8)) == tuesday != monday
    async with KafkaSiteStore(settings) as restarted:  # what a new collector reads
        assert restarted.directory.site_ids == {SITE, "boutique"}
        assert await restarted.salt_of(date(2026, 12, 8)) == tuesday
