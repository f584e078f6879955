"""The JS tracker in a real browser (Debian's headless Chromium), on a shop page served from
another origin than the collector, sending to a collector process on the real broker."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from contracts.settings import Settings
from tests.support.browser import browser, console_errors, events_of, shop_server
from tests.support.pipeline import SITE, WRITE_KEY
from tests.support.processes import collector as collector_process


def page(collector: int, extra: str = "") -> str:
    return (
        f'<html><head><title>Shop</title><script src="http://127.0.0.1:{collector}/t.js" '
        f'data-key="{WRITE_KEY}" data-flush="60000" {extra}></script></head>'
        "<body>shop</body></html>"
    )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    with shop_server(tmp_path / "shop") as served:
        yield served


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
        errors = console_errors(driver)
        driver.get("about:blank")  # page hide: the rest goes out in a beacon
    finally:
        driver.quit()

    assert errors == []  # no CORS refusal
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


async def test_a_single_page_apps_page_view_has_the_new_pages_title(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    root, port = shop
    (root / "app.html").write_text(page(collector))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/app.html")
        anonymous_id = driver.execute_script("return klantreis.anonymousId()")
        # As a router does: the URL changes first, the title once the new view rendered.
        driver.execute_script("history.pushState({}, '', '/tv-55'); document.title = 'TV 55'")
        driver.execute_script("setTimeout(function () { klantreis.flush() }, 300)")
        events = await events_of(settings, anonymous_id, 2)
    finally:
        driver.quit()
    assert [(e.context.page.path, e.context.page.title) for e in events] == [
        ("/app.html", "Shop"),
        ("/tv-55", "TV 55"),
    ]


async def test_an_acknowledged_event_is_never_sent_again(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    """Another tab (or a crash between the answer and the queue's update) can leave an event
    the collector already acknowledged in the queue; the tracker drops it."""
    root, port = shop
    (root / "shop.html").write_text(page(collector))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/shop.html")
        anonymous_id = driver.execute_script("return klantreis.anonymousId()")
        driver.execute_script("klantreis.track('Once'); klantreis.flush()")
        sent = await events_of(settings, anonymous_id, 2)
        driver.set_script_timeout(10)
        driver.execute_async_script(  # until the tracker has seen the answer
            "const done = arguments[0]; (function wait() {"
            " const a = JSON.parse(localStorage.getItem('kr_k') || '[]');"
            " a.length >= 2 ? done() : setTimeout(wait, 50); })()"
        )
        again = [e for e in sent if e.event == "Once"]
        stale = json.dumps([{"type": "track", "event": "Once", "event_id": again[0].event_id,
                             "anonymous_id": anonymous_id, "properties": {}}])  # fmt: skip
        driver.execute_script(f"localStorage.setItem('kr_q', {json.dumps(stale)});"
                              "klantreis.track('After'); klantreis.flush()")  # fmt: skip
        events = await events_of(settings, anonymous_id, 3)
    finally:
        driver.quit()
    assert sorted(str(e.event) for e in events) == ["After", "Once", "Shop"]  # "Once" once
