"""The dashboard in a real browser (Debian's headless Chromium) against `klantreis up` filled by
the simulator: the page's numbers are the API's, the device filter moves every figure, the
journey map draws its phases and flows, and a customer's journey opens as a timeline. The run
also takes the screenshots docs/ and the README show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from klantreis.local_kafka import free_port
from klantreis.simulator import Incident, generate_journeys, send_journeys
from tests.integration.clickhouse.test_embedded_up import up
from tests.support.browser import browser, console_errors
from tests.support.processes import Service

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
METRICS = (
    "sessions", "conversion_rate", "bounce_rate", "average_seconds_on_page",
    "cart_abandonment_rate", "orders", "revenue", "average_order_value",
    "customer_lifetime_value", "repeat_purchase_rate",
)  # fmt: skip


@dataclass
class Shop:
    base: str
    link: str  # the dashboard link `klantreis up` printed
    token: str
    service: Service

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.base}/api/v1{path}",
            params={"site": "demo", **params},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp_path = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    service = up(tmp_path, port)
    try:
        base = f"http://127.0.0.1:{port}"
        # A payment incident on mobile for the last week but one, and an A/B test throughout.
        today = datetime.now(UTC).date()
        incident = Incident("mobile", today - timedelta(days=12), today - timedelta(days=6))
        traffic = generate_journeys(seed=3, visitors=700, days=20, incident=incident, ab_test=True)
        report = asyncio.run(send_journeys(base, "demo", traffic))
        assert report.accepted == report.events > 0
        link = next(
            line.split("dashboard:", 1)[1].strip()
            for line in service.output().splitlines()
            if "dashboard:" in line
        )
        token = parse_qs(urlsplit(link).query)["token"][0]
        shop = Shop(base, link, token, service)
        _wait_until_written(shop)
        yield shop
    finally:
        assert service.stop(), service.output()


def _wait_until_written(shop: Shop) -> None:
    """Until the figures stop moving: everything sent has been sessionized and stored."""
    last, deadline = None, time.monotonic() + 60
    while time.monotonic() < deadline:
        now = shop.api("/metrics")["sessions"], shop.api("/funnel")["phases"][0]["journeys"]
        if now == last and now[0] > 0:
            return
        last = now
        time.sleep(1.5)
    raise AssertionError("the figures kept moving for a minute")


def _loaded(driver: WebDriver, expect: str = "") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = driver.execute_script("return document.body.dataset.loading")
        status = driver.find_element(By.ID, "status").text
        if state == "false" and expect in status:
            return
        assert state != "error", status
        time.sleep(0.1)
    raise AssertionError(f"the page did not finish loading: {status!r}")


def _figures(driver: WebDriver) -> dict[str, list[str]]:
    """Every figure on the page, by name, as the raw values the page shows."""
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('[data-figure]')]"
        ".map(e => [e.dataset.figure, e.dataset.value])"
    )
    figures: dict[str, list[str]] = {}
    for name, value in pairs:
        figures.setdefault(name, []).append(value)
    return figures


def _value(number: float | int | None) -> str:
    """An API number as the page writes it into data-value (JavaScript's String(n))."""
    if number is None:
        return ""
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return repr(number) if isinstance(number, float) else str(number)


def _check_against_api(shop: Shop, driver: WebDriver, **filters: str) -> None:
    shown = _figures(driver)
    days = {
        "date_from": driver.find_element(By.ID, "date-from").get_attribute("value"),
        "date_to": driver.find_element(By.ID, "date-to").get_attribute("value"),
    }
    params = days | filters
    metrics = shop.api("/metrics", **params)
    for name in METRICS:
        assert shown[name] == [_value(metrics[name])], name
    funnel = shop.api("/funnel", **params)
    assert shown["phase_journeys"] == [_value(p["journeys"]) for p in funnel["phases"]]
    assert shown["phase_from_previous"] == [_value(p["from_previous"]) for p in funnel["phases"]]
    dropoff = shop.api("/dropoff", **params)
    assert shown["phase_dropped"] == [_value(p["dropped"]) for p in dropoff["phases"]]
    steps = shop.api("/funnels/steps", **params, step=STEPS, window="1d")
    assert shown["step_people"] == [_value(s["people"]) for s in steps["steps"]]
    breakdown = shop.api("/breakdown", **params, by="channel")
    assert shown["breakdown_sessions"] == [_value(r["sessions"]) for r in breakdown["rows"]]
    drawn = shop.api("/journey-map", **params)["map"]
    assert shown["cell_journeys"] == [_value(n["journeys"]) for n in drawn["nodes"]]
    for side, segment in (("a", "new"), ("b", "returning")):
        compared = shop.api("/metrics", **params, segment=segment)
        for name in ("sessions", "conversion_rate", "orders", "revenue"):
            assert shown[f"compare_{side}:{name}"] == [_value(compared[name])], (side, name)
    trends = shop.api("/trends", **params)["days"]
    assert shown["trend-chart:session conversion"] == [_value(d["conversion_rate"]) for d in trends]


def test_the_page_shows_the_apis_numbers_and_the_device_filter_moves_every_figure(
    shop: Shop, tmp_path: Path
) -> None:
    driver = browser(tmp_path / "profile")
    try:
        driver.set_window_size(1280, 900)
        driver.get(shop.link)
        _loaded(driver)
        # Logged in: the token left the address bar and stays in the tab.
        assert "token" not in driver.current_url
        assert driver.execute_script("return sessionStorage.getItem('klantreis.token')")
        everyone = _figures(driver)
        _check_against_api(shop, driver)
        _screenshot(driver, "dashboard.png")

        Select(driver.find_element(By.ID, "filter-device")).select_by_value("mobile")
        _loaded(driver, "device mobile")
        mobile = _figures(driver)
        _check_against_api(shop, driver, device="mobile")
        with_data = [name for name, values in everyone.items() if any(values)]
        assert len(with_data) >= 20
        unchanged = [name for name in with_data if mobile.get(name) == everyone[name]]
        assert unchanged == [], unchanged
        assert "device=mobile" in driver.current_url  # a link to this view
        assert console_errors(driver) == []
    finally:
        driver.quit()
    output = shop.service.output()
    assert output.count(shop.token) == 2, "only the welcome's two links name the token"


def test_the_journey_map_draws_phases_and_flows_and_opens_the_journeys_behind_a_cell(
    shop: Shop, tmp_path: Path
) -> None:
    drawn = shop.api("/journey-map")
    driver = browser(tmp_path / "profile")
    try:
        driver.set_window_size(1280, 900)
        driver.get(shop.link)
        _loaded(driver)
        columns = driver.find_elements(By.CSS_SELECTOR, "#journey-map [data-phase-column]")
        assert [c.get_attribute("textContent") for c in columns] == drawn["phases"]
        flows = driver.find_elements(By.CSS_SELECTOR, "#journey-map path.flow")
        assert len(flows) == len(drawn["map"]["flows"]) > 0
        cells = driver.find_elements(By.CSS_SELECTOR, "#journey-map g.cell")
        assert len(cells) == len(drawn["map"]["nodes"])

        purchase = next(n for n in drawn["map"]["nodes"] if n["phase"] == "purchase")
        key = f"{purchase['phase']}|{purchase['touchpoint']}"
        driver.find_element(By.CSS_SELECTOR, f'g.cell[data-cell="{key}"] rect').click()
        behind = shop.api(
            "/journey-map/journeys", phase=purchase["phase"], touchpoint=purchase["touchpoint"],
            date_from=driver.find_element(By.ID, "date-from").get_attribute("value"),
            date_to=driver.find_element(By.ID, "date-to").get_attribute("value"),
        )["journeys"]  # fmt: skip
        listed = _wait_for(driver, "#cell-journeys [data-journey]")
        assert [b.get_attribute("data-journey") for b in listed] == behind

        listed[0].click()
        items = _wait_for(driver, "#customer-journey ol.timeline li")
        journey = shop.api(f"/customers/{behind[0]}/journey")
        assert [i.get_attribute("data-kind") for i in items] == [
            s["kind"] for s in journey["steps"]
        ]
        _screenshot(driver, "journey-map.png", "#journey-map")
    finally:
        driver.quit()


def test_a_customer_search_shows_their_journey_as_a_timeline(shop: Shop, tmp_path: Path) -> None:
    customer = next(
        j
        for n in shop.api("/journey-map")["map"]["nodes"]
        if n["phase"] == "retention"
        for j in shop.api("/journey-map/journeys", phase=n["phase"], touchpoint=n["touchpoint"])[
            "journeys"
        ]
        if j.startswith("cust-")
    )
    journey = shop.api(f"/customers/{customer}/journey")
    driver = browser(tmp_path / "profile")
    try:
        driver.set_window_size(390, 844)  # a phone
        driver.get(shop.link)
        _loaded(driver)
        field = driver.find_element(By.ID, "customer")
        field.send_keys(customer)
        field.submit()
        items = _wait_for(driver, "#customer-journey ol.timeline li")
        assert [i.get_attribute("data-kind") for i in items] == [
            s["kind"] for s in journey["steps"]
        ]
        assert (
            driver.find_element(By.CSS_SELECTOR, "ol.timeline").get_attribute("data-customer")
            == customer
        )
        _screenshot(driver, "dashboard-phone.png")
    finally:
        driver.quit()


def test_without_a_token_the_page_asks_for_one_and_shows_nothing(
    shop: Shop, tmp_path: Path
) -> None:
    driver = browser(tmp_path / "profile")
    try:
        driver.get(f"{shop.base}/")
        assert driver.find_element(By.ID, "login").is_displayed()
        assert not driver.find_element(By.ID, "main").is_displayed()
        driver.find_element(By.ID, "token").send_keys("kr_read_not_a_token")
        driver.find_element(By.ID, "token").submit()
        deadline = time.monotonic() + 10
        while not driver.find_element(By.ID, "login-error").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "not valid" in driver.find_element(By.ID, "login-error").text
        assert not driver.find_element(By.ID, "main").is_displayed()
    finally:
        driver.quit()
    page = httpx.get(f"{shop.base}/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


def _wait_for(driver: WebDriver, selector: str) -> list[Any]:
    deadline = time.monotonic() + 20
    while not driver.find_elements(By.CSS_SELECTOR, selector):
        assert time.monotonic() < deadline, selector
        time.sleep(0.1)
    time.sleep(0.2)  # the list is written whole; read it once it is
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _screenshot(driver: WebDriver, name: str, selector: str | None = None) -> None:
    """The whole page (or one part of it) as docs/screenshots/`name`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if selector:
        part = driver.find_element(By.CSS_SELECTOR, selector)
        # the header stays at the top while scrolling: out of the way of a picture of one part
        driver.execute_script(
            "document.querySelector('header').style.position = 'static';"
            "arguments[0].scrollIntoView()",
            part,
        )
        part.screenshot(str(SCREENSHOTS / name))
        return
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(width, min(height, 6000))
    time.sleep(0.3)
    driver.save_screenshot(str(SCREENSHOTS / name))


def test_two_segments_side_by_side_show_each_ones_figures_and_the_difference(
    shop: Shop, tmp_path: Path
) -> None:
    driver = browser(tmp_path / "profile")
    try:
        driver.set_window_size(1280, 900)
        driver.get(shop.link)
        _loaded(driver)
        for field, segment in (("compare-a", "ab_bucket:control"), ("compare-b", "ab_bucket:test")):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(segment)
        driver.find_element(By.ID, "compare-b").submit()
        days = {
            "date_from": driver.find_element(By.ID, "date-from").get_attribute("value"),
            "date_to": driver.find_element(By.ID, "date-to").get_attribute("value"),
        }
        control = shop.api("/metrics", **days, segment="ab_bucket:control")
        test = shop.api("/metrics", **days, segment="ab_bucket:test")
        assert control["orders"] > 0 and test["orders"] > 0
        deadline = time.monotonic() + 20
        while _figures(driver).get("compare_a:orders") != [_value(control["orders"])]:
            assert time.monotonic() < deadline, _figures(driver).get("compare_a:orders")
            time.sleep(0.1)
        shown = _figures(driver)
        for name in ("sessions", "conversion_rate", "orders", "revenue"):
            assert shown[f"compare_a:{name}"] == [_value(control[name])], name
            assert shown[f"compare_b:{name}"] == [_value(test[name])], name
        orders = driver.find_element(By.CSS_SELECTOR, '[data-difference="orders"]').text
        change = test["orders"] - control["orders"]
        assert orders.startswith(f"{'+' if change >= 0 else ''}{change:,}"), orders
        _screenshot(driver, "segments.png", 'section[aria-labelledby="compare-title"]')
    finally:
        driver.quit()
