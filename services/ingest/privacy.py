"""A site's privacy settings applied to a request: Do Not Track, consent, cookieless ids. Pure.

Cookieless counting, as Plausible does it: with no cookie or storage in the browser, the
collector names a visitor by a keyed hash of the day's salt, the site, the user agent and the
client's address cut to its network (/24, /48), and never keeps the address. Each day gets a new
random salt and the old one is destroyed (`SiteStore.salt_of`), so the same visitor has an
unrelated id tomorrow and no one, klantreis included, can link the two.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from typing import Any

COOKIELESS_PREFIX = "c_"


def opted_out(headers: Mapping[str, str]) -> bool:
    """The browser asks not to be tracked: Do Not Track or Global Privacy Control."""
    return headers.get("dnt", "").strip() == "1" or headers.get("sec-gpc", "").strip() == "1"


def has_consent(item: Any) -> bool:
    """The event says the visitor consented: `context.consent` is true."""
    context = item.get("context") if isinstance(item, dict) else None
    return isinstance(context, dict) and context.get("consent") is True


def network_of(address: str) -> str:
    """The address cut to its network: IPv4 to /24, IPv6 to /48 (empty when unreadable)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False).network_address)


def cookieless_visitor(salt: bytes, site_id: str, user_agent: str, address: str) -> str:
    mac = hmac.new(
        salt, f"{site_id}\x00{user_agent}\x00{network_of(address)}".encode(), hashlib.sha256
    )
    return COOKIELESS_PREFIX + mac.hexdigest()[:32]


def with_visitor(item: Any, visitor: str) -> Any:
    """The event with `visitor` as its anonymous id, unless it names one itself."""
    if not isinstance(item, dict) or item.get("anonymous_id"):
        return item
    return {**item, "anonymous_id": visitor}


def user_agent_of(item: Any, header: str | None) -> str:
    context = item.get("context") if isinstance(item, dict) else None
    sent = context.get("user_agent") if isinstance(context, dict) else None
    return sent if isinstance(sent, str) else header or ""
