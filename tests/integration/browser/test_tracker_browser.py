"""The JS tracker in a real browser (Debian's headless Chromium), on a shop page served from
another origin than the collector, sending to a collector process on the real broker."""

from __future__ import annotations

import asyncio
import functools
import gzip
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from contracts.events import Event
from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import SITE, WRITE_KEY, read_events
from tests.support.processes import collector as collector_process

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def page(collector: int, extra: str = "") -> str:
    return (
        f'<html><head><title>Shop</title><script src="http://127.0.0.1:{collector}/t.js" '
        f'data-key="{WRITE_KEY}" data-flush="60000" {extra}></script></head>'
        "<body>shop</body></html>"
    )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A static web server for the shop's pages, on its own port: another origin."""
    root = tmp_path / "shop"
    root.mkdir()
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, port
    finally:
        server.shutdown()
        server.server_close()


def browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)  # fmt: skip
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


async def events_of(settings: Settings, anonymous_id: str, expected: int) -> list[Event]:
    deadline = time.monotonic() + 20
    while True:
        found = [e for e in await read_events(settings) if e.anonymous_id == anonymous_id]
        if len(found) >= expected or time.monotonic() > deadline:
            return sorted(found, key=lambda e: e.timestamp)
        await asyncio.sleep(0.5)


@pytest.fixture
def collector(settings: Settings, tmp_path: Path) -> Iterator[int]:
    hosts = json.dumps({SITE: ["127.0.0.1"]})
    with collector_process(settings, tmp_path, KLANTREIS_SITE_HOSTS=hosts) as base:
        yield int(base.rsplit(":", 1)[1])


def test_the_tracker_fits_its_size_budget(collector: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{collector}/t.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert len(gzip.compress(response.content)) < 3 * 1024


async def test_page_views_cart_and_order_arrive_with_campaign_and_referrer(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    root, port = shop
    (root / "ref.html").write_text(
        '<a id="go" href="shop.html?utm_source=google&utm_medium=cpc&gclid=abc">to the shop</a>'
    )
    (root / "shop.html").write_text(page(collector))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/ref.html")
        driver.find_element(By.ID, "go").click()
        anonymous_id = driver.execute_script("return klantreis.anonymousId()")
        driver.execute_script(
            "klantreis.productAdded({sku: 'tv-55', price: 499}); klantreis.flush()"
        )
        driver.execute_script(
            "history.pushState({}, '', '/cart');"
            "klantreis.orderCompleted({order_id: 'o-1', revenue: 499, currency: 'EUR'})"
        )
        driver.get("about:blank")  # page hide: the rest goes out in a beacon
    finally:
        driver.quit()

    events = await events_of(settings, anonymous_id, 4)
    assert [(e.type.value, e.event) for e in events] == [
        ("page", "Shop"),
        ("track", "Product Added"),
        ("page", "Shop"),
        ("track", "Order Completed"),
    ]
    landing, added, cart, order = events
    assert landing.context.page.referrer == f"http://127.0.0.1:{port}/ref.html"
    assert landing.channel == "paid_search"
    assert all(e.context.campaign.source == "google" for e in events)
    assert cart.context.page.path == "/cart"
    assert cart.context.page.referrer == landing.context.page.url  # the SPA's previous page
    assert order.properties == {"order_id": "o-1", "revenue": 499, "currency": "EUR"}
    assert added.properties == {"sku": "tv-55", "price": 499}


STORED = (
    "return [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)]"
    ".filter(function (v) { return v.indexOf('kr_') >= 0; })"
)


async def test_nothing_is_sent_or_written_before_consent_when_the_site_requires_it(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    root, port = shop
    (root / "consent.html").write_text(page(collector, 'data-consent="required"'))
    url = f"http://127.0.0.1:{port}/consent.html?utm_source=newsletter&utm_medium=email"
    driver = browser(tmp_path / "profile")
    try:
        driver.get(url)
        before = driver.execute_script("return klantreis.anonymousId()")
        driver.execute_script("klantreis.identify('dora'); klantreis.track('Before Consent')")
        assert driver.execute_script(STORED) == []  # no cookie, no storage: not even the campaign
        driver.execute_script("klantreis.consent(false); klantreis.flush()")
        assert driver.execute_script(STORED) == []
        driver.get("about:blank")  # a page hide without consent sends nothing either
        await asyncio.sleep(3)
        assert await events_of(settings, before, 0) == []

        driver.get(url)
        driver.execute_script("klantreis.track('After Consent'); klantreis.consent(true)")
        anonymous_id = driver.execute_script("return klantreis.anonymousId()")
        assert driver.execute_script(STORED) != []  # the visitor's id, now that they agreed
        events = await events_of(settings, anonymous_id, 2)
        driver.execute_script("klantreis.consent(false)")
        assert driver.execute_script(STORED) == []  # withdrawn: wiped
    finally:
        driver.quit()
    assert anonymous_id != before  # the id of the page without consent was never kept
    assert [(e.type.value, e.event) for e in events] == [
        ("page", "Shop"),
        ("track", "After Consent"),
    ]
    assert all(e.context.campaign.source == "newsletter" for e in events)


async def test_a_cookieless_page_writes_nothing_to_the_browser(
    collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    root, port = shop
    (root / "cookieless.html").write_text(page(collector, 'data-cookieless="true"'))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/cookieless.html?utm_source=ads")
        driver.execute_script("klantreis.identify('dora'); klantreis.track('Viewed')")
        assert driver.execute_script("return klantreis.anonymousId()") is None
        assert driver.execute_script(STORED) == []
    finally:
        driver.quit()
