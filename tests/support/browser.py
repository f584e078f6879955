"""A real browser (Debian's headless Chromium) on a shop's pages, served from another origin
than the collector, and what reached the collector's topic."""

from __future__ import annotations

import asyncio
import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from contracts.events import Event
from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import read_events

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextmanager
def shop_server(root: Path) -> Iterator[tuple[Path, int]]:
    """A static web server for the shop's pages, on its own port: another origin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "favicon.ico").write_bytes(b"")  # a shop has one: no 404 in the console
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, port
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page's console logged as errors (a refused CORS request among them)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]


async def events_of(settings: Settings, anonymous_id: str, expected: int) -> list[Event]:
    """The visitor's events on the events topic, in time order, once `expected` have arrived
    (or 20 s have passed)."""
    deadline = time.monotonic() + 20
    while True:
        found = [e for e in await read_events(settings) if e.anonymous_id == anonymous_id]
        if len(found) >= expected or time.monotonic() > deadline:
            return sorted(found, key=lambda e: e.timestamp)
        await asyncio.sleep(0.5)


SDKS = Path(__file__).resolve().parents[1] / "integration" / "browser" / "sdks"
BUNDLES = Path(__file__).resolve().parents[2] / ".cache" / "sdk-bundles"


def sdk_bundles() -> Path:
    """The official SDKs at the versions package-lock.json pins, bundled for the browser (as
    `make sdk-bundles` does): built when missing or older than the lock file."""
    lock = SDKS / "package-lock.json"
    stamp = BUNDLES / ".built"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=SDKS, check=True)
        subprocess.run(["node", "build.mjs", str(BUNDLES)], cwd=SDKS, check=True)
        stamp.touch()
    return BUNDLES
