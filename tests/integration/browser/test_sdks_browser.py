"""The SDKs shops already run, unmodified, in real Chromium on a page of another origin than the
collector: Segment's analytics.js (`@segment/analytics-next`) and Snowplow's browser tracker,
bundled from the versions package-lock.json pins (tests/integration/browser/sdks)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.browser import browser, console_errors, events_of, sdk_bundles, shop_server
from tests.support.pipeline import ADMIN, ADMIN_TOKEN, SITE, WRITE_KEY
from tests.support.processes import collector as collector_process
from tests.support.processes import start, wait_for_http

CAMPAIGN = "utm_source=newsletter&utm_medium=email&utm_campaign=winter"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The shop's pages and the bundled SDKs, on their own origin."""
    with shop_server(tmp_path / "shop") as (root, port):
        for bundle in sdk_bundles().glob("*.js"):
            shutil.copy(bundle, root / bundle.name)
        (root / "ref.html").write_text('<a id="go" href="shop.html?' + CAMPAIGN + '">shop</a>')
        yield root, port


@pytest.fixture
def collector(settings: Settings, tmp_path: Path) -> Iterator[int]:
    hosts = json.dumps({SITE: ["127.0.0.1"]})
    with collector_process(settings, tmp_path, KLANTREIS_SITE_HOSTS=hosts) as base:
        yield int(base.rsplit(":", 1)[1])


def segment_page(collector: int, options: str = "{}") -> str:
    """A shop page loading analytics.js as Segment documents it, with `cdnURL` the only change:
    the settings it loads from there send every call to the collector."""
    return f"""<html><head><title>Winter sale</title><script src="segment.js"></script><script>
window.loaded = AnalyticsBrowser.load(
  {{writeKey: "{WRITE_KEY}", cdnURL: "http://127.0.0.1:{collector}"}}, {options});
</script></head><body>shop</body></html>"""


CALLS = """
const done = arguments[arguments.length - 1];
window.loaded.then(([analytics]) => Promise.all([
  // at sign-up, before the identify: the visitor's anonymous id becomes the customer's
  analytics.alias("dora", analytics.user().anonymousId()),
  analytics.page("Sale"),
  analytics.track("Product Added", {sku: "tv-55", price: 499}),
  analytics.identify("dora", {email: "dora@example.com", plan: "pro"}),
  analytics.track("Order Completed", {order_id: "o-1", revenue: 499, currency: "EUR"}),
  analytics.group("acme", {plan: "enterprise"}),
]).then((contexts) => done({
  anonymousId: analytics.user().anonymousId(),
  failed: contexts.filter((c) => c.failedDelivery()).length,
}))).catch((e) => done({error: String(e)}));
"""


@pytest.mark.parametrize(
    "options",
    [
        "{}",
        '{integrations: {"Segment.io": {deliveryStrategy: {strategy: "batching",'
        " config: {size: 4, timeout: 500}}}}}",
    ],
    ids=["default", "batching"],
)
async def test_analytics_next_delivers_page_track_and_identify(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path, options: str
) -> None:
    root, port = shop
    (root / "shop.html").write_text(segment_page(collector, options))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/ref.html")
        driver.find_element(By.ID, "go").click()
        driver.set_script_timeout(30)
        outcome = driver.execute_async_script(CALLS)
        assert "error" not in outcome and outcome["failed"] == 0, outcome
        # Batching resolves a call once it is queued: the page stays open until all arrived.
        events = await events_of(settings, outcome["anonymousId"], 6)
        errors = console_errors(driver)
    finally:
        driver.quit()
    assert errors == []  # no CORS refusal, no failed request
    by_kind = {(e.type.value, e.event): e for e in events}
    assert set(by_kind) == {
        ("page", "Sale"),
        ("track", "Product Added"),
        ("identify", None),
        ("track", "Order Completed"),
        ("group", None),
        ("alias", None),
    }, by_kind
    page = by_kind[("page", "Sale")]
    assert page.context.page.url == f"http://127.0.0.1:{port}/shop.html?{CAMPAIGN}"
    assert page.context.page.referrer == f"http://127.0.0.1:{port}/ref.html"
    assert page.context.page.title == "Winter sale"
    assert (page.context.campaign.source, page.context.campaign.medium) == ("newsletter", "email")
    assert page.channel == "email"
    assert by_kind[("track", "Product Added")].properties == {"sku": "tv-55", "price": 499}
    identify = by_kind[("identify", None)]
    assert identify.user_id == "dora"
    assert identify.traits == {"email": "dora@example.com", "plan": "pro"}
    order = by_kind[("track", "Order Completed")]
    assert order.properties == {"order_id": "o-1", "revenue": 499, "currency": "EUR"}
    assert order.context.library is not None and order.context.library.startswith("analytics")
    group = by_kind[("group", None)]
    assert (group.group_id, group.traits, group.user_id) == ("acme", {"plan": "enterprise"}, "dora")
    alias = by_kind[("alias", None)]
    assert (alias.user_id, alias.previous_id) == ("dora", outcome["anonymousId"])


def snowplow4_page(collector: int, method: str) -> str:
    """Snowplow's browser tracker 4.x with its defaults (POST, credentials included, one event a
    request) but `eventMethod` where given, and the Snowplow e-commerce plugin; the app id is
    the write key."""
    config = f'appId: "{WRITE_KEY}", plugins: [sp.SnowplowEcommercePlugin()]'
    if method == "get":
        config += ', eventMethod: "get"'
    return f"""<html><head><title>Winter sale</title><script src="snowplow4.js"></script><script>
const sp = window.snowplow4;
window.tracker = sp.newTracker("sp", "http://127.0.0.1:{collector}", {{{config}}});
sp.setUserId("dora");
sp.trackPageView();
const tv = {{id: "tv-55", name: "TV", price: 499, quantity: 1, currency: "EUR", category: "tv"}};
sp.trackAddToCart({{products: [tv], total_value: 499, currency: "EUR"}});
sp.trackTransaction({{transaction_id: "o-1", revenue: 499, currency: "EUR",
                     payment_method: "card", products: [tv]}});
sp.trackStructEvent({{category: "video", action: "play", label: "unboxing", value: 12}});
</script></head><body>shop</body></html>"""


@pytest.mark.parametrize("method", ["post", "get"])
async def test_snowplow_browser_tracker_4_delivers_views_cart_and_transaction(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path, method: str
) -> None:
    root, port = shop
    (root / "shop.html").write_text(snowplow4_page(collector, method))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/ref.html")
        driver.find_element(By.ID, "go").click()
        visitor = driver.execute_script("return window.tracker.getDomainUserId()")
        events = await events_of(settings, visitor, 4)
        errors = console_errors(driver)
    finally:
        driver.quit()
    assert errors == []
    assert [(e.type.value, e.event) for e in events] == [
        ("page", "Winter sale"),
        ("track", "Product Added"),
        ("track", "Order Completed"),
        ("track", "play"),
    ]
    view, added, order, played = events
    assert all(e.user_id == "dora" for e in events)
    assert view.context.page.url == f"http://127.0.0.1:{port}/shop.html?{CAMPAIGN}"
    assert view.context.page.referrer == f"http://127.0.0.1:{port}/ref.html"
    assert view.channel == "email"
    assert view.context.user_agent and "Chrome" in view.context.user_agent
    assert added.properties["product_id"] == "tv-55" and added.properties["price"] == 499
    assert (order.properties["order_id"], order.properties["revenue"]) == ("o-1", 499)
    assert order.properties["products"][0]["product_id"] == "tv-55"
    assert {k: played.properties.get(k) for k in ("category", "label", "value")} == {
        "category": "video",
        "label": "unboxing",
        "value": 12,
    }


SNOWPLOW3_PAGE = """<html><head><title>Checkout</title><script src="snowplow3.js"></script><script>
const sp = window.snowplow3;
window.tracker = sp.newTracker("sp", "http://127.0.0.1:{collector}",
                               {{appId: "{key}", plugins: [sp.EcommercePlugin()]}});
sp.trackPageView();
sp.addTrans({{orderId: "o-3", total: 120.5, tax: 20, shipping: 5, currency: "EUR"}});
sp.addItem({{orderId: "o-3", sku: "tv-55", name: "TV", category: "tv", price: 100,
             quantity: 1, currency: "EUR"}});
sp.trackTrans();
</script></head><body>checkout</body></html>"""


async def test_snowplow_tracker_3_legacy_ecommerce_calls_arrive_as_an_order_and_its_lines(
    settings: Settings, collector: int, shop: tuple[Path, int], tmp_path: Path
) -> None:
    root, port = shop
    (root / "checkout.html").write_text(SNOWPLOW3_PAGE.format(collector=collector, key=WRITE_KEY))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/checkout.html")
        visitor = driver.execute_script("return window.tracker.getDomainUserId()")
        events = await events_of(settings, visitor, 3)
        errors = console_errors(driver)
    finally:
        driver.quit()
    assert errors == []
    by_name = {e.event: e for e in events}
    assert set(by_name) == {"Checkout", "Order Completed", "Order Line Item"}
    order = by_name["Order Completed"].properties
    assert order.pop("contexts")["web_page"]["id"]  # the tracker's page entity, kept
    assert order == {"order_id": "o-3", "revenue": 120.5, "tax": 20, "shipping": 5,
                     "currency": "EUR"}  # fmt: skip
    assert by_name["Order Line Item"].properties["sku"] == "tv-55"


@pytest.fixture
def whole_pipeline(settings: Settings, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """`klantreis ingest`, `sessionizer` and `metrics` as processes: (collector, read API)."""
    ingest_port, api_port = free_port(), free_port()
    env = {
        "KLANTREIS_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "KLANTREIS_TOPIC_PREFIX": settings.topic_prefix,
        "KLANTREIS_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "KLANTREIS_SITES": json.dumps({WRITE_KEY: SITE}),
        "KLANTREIS_SITE_HOSTS": json.dumps({SITE: ["127.0.0.1"]}),
        "KLANTREIS_DATA_DIR": str(tmp_path / "var"),
        "KLANTREIS_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'chdb'}",
        "KLANTREIS_SESSIONIZER_PORT": "0",
        "KLANTREIS_FLUSH_INTERVAL_SECONDS": "0.2",
        "PORT": str(ingest_port),
        "KLANTREIS_API_PORT": str(api_port),
        "KLANTREIS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    services = [start(name, [name], env, tmp_path) for name in ("metrics", "sessionizer", "ingest")]
    try:
        wait_for_http(f"http://127.0.0.1:{ingest_port}/readyz", services[2])
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz", services[0])
        yield ingest_port, api_port
    finally:
        stopped = {service.name: service.stop() for service in reversed(services)}
        assert all(stopped.values()), {s.name: s.output()[-2000:] for s in services}


async def test_a_snowplow_transaction_counts_as_an_order_with_its_revenue(
    whole_pipeline: tuple[int, int], shop: tuple[Path, int], tmp_path: Path
) -> None:
    collector, api = whole_pipeline
    root, port = shop
    (root / "shop.html").write_text(snowplow4_page(collector, "post"))
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}/ref.html")
        driver.find_element(By.ID, "go").click()
        deadline = time.monotonic() + 60
        while True:
            figures = httpx.get(f"http://127.0.0.1:{api}/api/v1/metrics", params={"site": SITE},
                                headers=ADMIN).json()  # fmt: skip
            if figures["orders"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        driver.quit()
    assert (figures["orders"], figures["revenue"], figures["buyers"]) == (1, 499, 1), figures
    assert figures["average_order_value"] == 499
