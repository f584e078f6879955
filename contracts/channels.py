"""Default channel grouping: where a visit came from, in the channel names shops know from GA4.

Applied by the collector to every event from its UTM parameters, ad click ids and referrer, so the
sessionizer can say which channel moved a journey and the warehouse can break funnels down by it.
Rules are checked in GA4's order; the first that matches names the channel. Campaign parameters,
where a link has them, decide over the referrer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, urlsplit


class Channel(StrEnum):
    DIRECT = "direct"
    CROSS_NETWORK = "cross_network"
    PAID_SHOPPING = "paid_shopping"
    PAID_SEARCH = "paid_search"
    PAID_SOCIAL = "paid_social"
    PAID_VIDEO = "paid_video"
    DISPLAY = "display"
    PAID_OTHER = "paid_other"
    ORGANIC_SHOPPING = "organic_shopping"
    ORGANIC_SOCIAL = "organic_social"
    ORGANIC_VIDEO = "organic_video"
    ORGANIC_SEARCH = "organic_search"
    REFERRAL = "referral"
    EMAIL = "email"
    AFFILIATES = "affiliates"
    AUDIO = "audio"
    SMS = "sms"
    MOBILE_PUSH = "mobile_push"
    INTERNAL = "internal"
    UNASSIGNED = "unassigned"


# Hosts by category, matched as a host or a parent domain of the referrer (www.google.nl -> google).
SEARCH_SITES = frozenset(
    {"google", "bing", "duckduckgo", "yahoo", "ecosia", "baidu", "yandex", "qwant", "startpage",
     "search.brave", "ask", "naver", "seznam"}
)  # fmt: skip
SOCIAL_SITES = frozenset(
    {"facebook", "fb", "instagram", "linkedin", "lnkd", "twitter", "t", "x", "pinterest",
     "reddit", "tiktok", "snapchat", "threads", "mastodon", "bsky", "whatsapp", "messenger",
     "tumblr", "vk", "quora"}
)  # fmt: skip
VIDEO_SITES = frozenset({"youtube", "youtu", "vimeo", "twitch", "dailymotion"})
SHOPPING_SITES = frozenset(
    {"amazon", "ebay", "bol", "marktplaats", "etsy", "aliexpress", "shopping.google",
     "kieskeurig", "tweakers", "beslist", "idealo", "zalando", "coolblue"}
)  # fmt: skip
EMAIL_HOSTS = frozenset({"mail.google", "outlook.live", "mail.yahoo", "webmail"})

# Ad click ids: their presence means a paid click even without UTM parameters.
SEARCH_CLICK_IDS = ("gclid", "gbraid", "wbraid", "msclkid", "dclid")
# fbclid is not among them: Facebook adds it to organic links too.
SOCIAL_CLICK_IDS = ("ttclid", "li_fat_id", "twclid", "scclid", "epik", "rdt_cid")

_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_SHOP_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
_SOCIAL_MEDIUM = frozenset({"social", "social-network", "social-media", "sm", "social network",
                            "social media", "organic_social"})  # fmt: skip
_DISPLAY_MEDIUM = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_EMAIL = frozenset({"email", "e-mail", "e_mail", "e mail", "newsletter"})


@dataclass(frozen=True)
class Visit:
    """What the channel is decided from, lower-cased."""

    source: str = ""
    medium: str = ""
    campaign: str = ""
    referrer_host: str = ""
    page_host: str = ""
    click_ids: frozenset[str] = frozenset()


def _site_names(host: str) -> set[str]:
    """The brand of a host and its brand-qualified subdomain: `mail.google.co.uk` ->
    {'google', 'mail.google'}. Lists name brands, not each country domain of a brand."""
    labels = host.lower().removeprefix("www.").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        core = labels[:-2]  # a second-level public suffix such as co.uk or com.au
    elif len(labels) >= 2:
        core = labels[:-1]
    else:
        core = labels
    names = {core[-1]}
    if len(core) >= 2:
        names.add(f"{core[-2]}.{core[-1]}")
    return names


def _is(source: str, host: str, sites: frozenset[str]) -> bool:
    return bool((_site_names(source) if source else set()) & sites) or bool(
        host and _site_names(host) & sites
    )


def classify(visit: Visit) -> Channel:
    source, medium, campaign = visit.source, visit.medium, visit.campaign
    host = visit.referrer_host
    paid = bool(_PAID_MEDIUM.match(medium))
    if visit.click_ids & set(SEARCH_CLICK_IDS):
        return Channel.PAID_SEARCH
    if visit.click_ids & set(SOCIAL_CLICK_IDS):
        return Channel.PAID_SOCIAL
    if not source and not medium and not host:
        return Channel.DIRECT
    if host and host.removeprefix("www.") == visit.page_host.removeprefix("www."):
        if not (source or medium):
            return Channel.INTERNAL  # navigation within the shop says nothing of the origin
    if source or medium:
        # As in GA4, campaign parameters decide source and medium: the referrer of a link in a
        # newsletter read in Gmail's web app, say, is google.com, and the visit is e-mail.
        host = ""
    if _is("", host, EMAIL_HOSTS):
        return Channel.EMAIL
    if "cross-network" in campaign:
        return Channel.CROSS_NETWORK
    if paid and (_is(source, "", SHOPPING_SITES) or _SHOP_CAMPAIGN.match(campaign)):
        return Channel.PAID_SHOPPING
    if paid and _is(source, host, SEARCH_SITES):
        return Channel.PAID_SEARCH
    if paid and _is(source, host, SOCIAL_SITES):
        return Channel.PAID_SOCIAL
    if paid and _is(source, host, VIDEO_SITES):
        return Channel.PAID_VIDEO
    if medium in _DISPLAY_MEDIUM:
        return Channel.DISPLAY
    if paid:
        return Channel.PAID_OTHER
    if _is(source, host, SHOPPING_SITES) or _SHOP_CAMPAIGN.match(campaign):
        return Channel.ORGANIC_SHOPPING
    if _is(source, host, SOCIAL_SITES) or medium in _SOCIAL_MEDIUM:
        return Channel.ORGANIC_SOCIAL
    if _is(source, host, VIDEO_SITES) or "video" in medium:
        return Channel.ORGANIC_VIDEO
    if _is(source, host, SEARCH_SITES) or medium == "organic":
        return Channel.ORGANIC_SEARCH
    if source in _EMAIL or medium in _EMAIL:
        return Channel.EMAIL
    if medium == "affiliate":
        return Channel.AFFILIATES
    if medium == "audio":
        return Channel.AUDIO
    if source == "sms" or medium == "sms":
        return Channel.SMS
    if medium.endswith("push") or "mobile" in medium or "notification" in medium:
        return Channel.MOBILE_PUSH
    if medium in {"referral", "app", "link"} or (host and not medium):
        return Channel.REFERRAL
    return Channel.UNASSIGNED


def visit_from(
    page_url: str | None,
    referrer: str | None,
    source: str | None = None,
    medium: str | None = None,
    campaign: str | None = None,
) -> Visit:
    """Read a visit from a page URL (UTM parameters, click ids) and the referrer."""
    query = parse_qs(urlsplit(page_url).query) if page_url else {}
    page_host = (urlsplit(page_url).hostname or "") if page_url else ""
    referrer_host = (urlsplit(referrer).hostname or "") if referrer else ""

    def utm(name: str, given: str | None) -> str:
        value = given if given is not None else (query.get(f"utm_{name}") or [""])[0]
        return value.strip().lower()

    click_ids = frozenset(key for key in query if key in SEARCH_CLICK_IDS + SOCIAL_CLICK_IDS)
    return Visit(
        source=utm("source", source),
        medium=utm("medium", medium),
        campaign=utm("campaign", campaign),
        referrer_host=referrer_host.lower(),
        page_host=page_host.lower(),
        click_ids=click_ids,
    )
