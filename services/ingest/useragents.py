"""What a user-agent string says about a visit: device class, browser family, and whether it is
a bot or a headless browser. Bots are flagged, not dropped, so a shop can see them and filter.

Deliberately small: the collector needs three coarse answers per event, on its hot path, and
user agents repeat, so answers are cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|headless|phantomjs|lighthouse|pingdom|uptime|monitor|"
    r"facebookexternalhit|bingpreview|preview|curl/|wget/|python-|httpx|aiohttp|go-http-client|"
    r"java/|okhttp|axios|node-fetch|undici|scrapy|postman|insomnia",
    re.IGNORECASE,
)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|android.*mobile|windows phone|blackberry", re.IGNORECASE)
# Order matters: Edge and Opera and Samsung's browser also say "Chrome"; Chrome also "Safari".
_BROWSERS = (
    ("edge", re.compile(r"edg(e|a|ios)?/", re.IGNORECASE)),
    ("opera", re.compile(r"opr/|opera", re.IGNORECASE)),
    ("samsung", re.compile(r"samsungbrowser", re.IGNORECASE)),
    ("firefox", re.compile(r"firefox|fxios", re.IGNORECASE)),
    ("chrome", re.compile(r"chrome|crios|chromium", re.IGNORECASE)),
    ("safari", re.compile(r"safari", re.IGNORECASE)),
)


@dataclass(frozen=True)
class Agent:
    device: str  # desktop, mobile, tablet, bot, unknown
    browser: str  # chrome, safari, firefox, edge, opera, samsung, other, unknown
    is_bot: bool


@lru_cache(maxsize=4096)
def classify(user_agent: str | None) -> Agent:
    if not user_agent:
        return Agent("unknown", "unknown", False)
    browser = next((name for name, pattern in _BROWSERS if pattern.search(user_agent)), "other")
    if _BOT.search(user_agent):
        return Agent("bot", browser, True)
    if _TABLET.search(user_agent):
        return Agent("tablet", browser, False)
    if _MOBILE.search(user_agent):
        return Agent("mobile", browser, False)
    return Agent("desktop", browser, False)
