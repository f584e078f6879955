from __future__ import annotations

import pytest

from services.ingest.useragents import classify

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
SAMSUNG_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36"
)
EDGE = CHROME_WIN + " Edg/131.0.0.0"
FIREFOX_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0"
HEADLESS = CHROME_WIN.replace("Chrome/", "HeadlessChrome/")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    ("agent", "device", "browser", "bot"),
    [
        (CHROME_WIN, "desktop", "chrome", False),
        (SAFARI_IPHONE, "mobile", "safari", False),
        (SAMSUNG_TABLET, "tablet", "samsung", False),
        (EDGE, "desktop", "edge", False),
        (FIREFOX_ANDROID, "mobile", "firefox", False),
        (HEADLESS, "bot", "chrome", True),
        (GOOGLEBOT, "bot", "other", True),
        ("curl/8.5.0", "bot", "other", True),
        ("python-requests/2.32", "bot", "other", True),
        (None, "unknown", "unknown", False),
    ],
)
def test_user_agents_are_classified(
    agent: str | None, device: str, browser: str, bot: bool
) -> None:
    result = classify(agent)
    assert (result.device, result.browser, result.is_bot) == (device, browser, bot)
