"""Who may send: write keys from the request and the hosts a site allows, without HTTP."""

from __future__ import annotations

import base64

import pytest

from services.ingest.access import origin_allowed, request_write_key, site_of
from services.ingest.intake import RequestRefused

KEYS = {"wk_live": "shop"}


def basic(user: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


def test_the_basic_user_name_wins_over_the_query_key() -> None:
    assert request_write_key(basic("wk_live"), {"key": "other"}) == "wk_live"
    assert request_write_key({}, {"key": "wk_live"}) == "wk_live"
    assert request_write_key({}, {}) is None


@pytest.mark.parametrize("header", ["Bearer abc", "Basic %%%not-base64"])
def test_an_authorization_header_that_is_not_basic_is_a_401(header: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        request_write_key({"authorization": header}, {})
    assert (caught.value.status, caught.value.code) == (401, "bad_authorization")


@pytest.mark.parametrize(("key", "code"), [(None, "missing_write_key"), ("x", "unknown_write_key")])
def test_a_missing_or_unknown_key_is_a_401(key: str | None, code: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        site_of(key, KEYS)
    assert (caught.value.status, caught.value.code) == (401, code)
    assert site_of("wk_live", KEYS) == "shop"


def test_a_site_accepts_its_hosts_and_their_wildcards_only() -> None:
    hosts = {"shop": ["shop.example", "*.shop.example"]}
    assert origin_allowed(hosts, "shop", "https://shop.example")
    assert origin_allowed(hosts, "shop", "https://www.shop.example:8443")
    assert not origin_allowed(hosts, "shop", "https://evil.example")
    assert not origin_allowed(hosts, "shop", "https://shop.example.evil.example")
    assert origin_allowed(hosts, "other", "https://anything.example")


def test_the_client_address_is_the_entry_your_own_proxies_added() -> None:
    from services.ingest.access import client_address

    # a client that writes its own X-Forwarded-For gains nothing: the proxy appended the truth
    assert client_address("198.51.100.1, 203.0.113.9", "10.0.0.2", 1) == "203.0.113.9"
    assert client_address("spoofed, 203.0.113.9, 10.0.0.5", "10.0.0.2", 2) == "203.0.113.9"
    assert client_address("203.0.113.9", "10.0.0.2", 2) == "10.0.0.2"  # not through both
    assert client_address("198.51.100.1", "203.0.113.9", 0) == "203.0.113.9"  # no proxy: ignored
    assert client_address(None, "203.0.113.9", 1) == "203.0.113.9"
