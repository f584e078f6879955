"""Do Not Track, consent and cookieless visitor ids: the pure rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from contracts.sitestore import SALTS_FILE, FileSiteStore
from services.ingest.privacy import (
    cookieless_visitor,
    has_consent,
    network_of,
    opted_out,
    with_visitor,
)

SALT = b"s" * 32


def test_do_not_track_and_global_privacy_control_opt_out() -> None:
    assert opted_out({"dnt": "1"}) and opted_out({"sec-gpc": "1"})
    assert not opted_out({"dnt": "0"}) and not opted_out({})


def test_consent_is_an_explicit_true() -> None:
    assert has_consent({"context": {"consent": True}})
    refused: list[object] = [
        {},
        {"context": {"consent": "yes"}},
        {"context": []},
        [],
        {"consent": 1},
    ]
    assert not any(map(has_consent, refused))


def test_addresses_are_cut_to_their_network() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0"
    assert network_of("2001:db8:abcd:12:1::7") == "2001:db8:abcd::"
    assert network_of("not an address") == ""


def test_a_cookieless_id_depends_on_salt_site_browser_and_network_only() -> None:
    one = cookieless_visitor(SALT, "shop", "Chrome", "203.0.113.7")
    assert one == cookieless_visitor(SALT, "shop", "Chrome", "203.0.113.250")
    assert one != cookieless_visitor(b"t" * 32, "shop", "Chrome", "203.0.113.7")  # another day
    assert one != cookieless_visitor(SALT, "blog", "Chrome", "203.0.113.7")
    assert one != cookieless_visitor(SALT, "shop", "Firefox", "203.0.113.7")
    assert one != cookieless_visitor(SALT, "shop", "Chrome", "203.0.114.7")
    assert "203" not in one


def test_an_event_with_an_id_of_its_own_keeps_it() -> None:
    assert with_visitor({"type": "page"}, "c_1") == {"type": "page", "anonymous_id": "c_1"}
    assert with_visitor({"anonymous_id": "mine"}, "c_1") == {"anonymous_id": "mine"}


async def test_each_day_gets_a_new_salt_and_the_old_one_is_destroyed(tmp_path: Path) -> None:
    store = FileSiteStore(tmp_path / "sites.json")
    monday = await store.salt_of(date(2026, 12, 7))
    assert await store.salt_of(date(2026, 12, 7)) == monday
    assert await FileSiteStore(tmp_path / "sites.json").salt_of(date(2026, 12, 7)) == monday
    tuesday = await store.salt_of(date(2026, 12, 8))
    assert tuesday != monday
    assert monday.hex() not in (tmp_path / SALTS_FILE).read_text()
    assert (tmp_path / SALTS_FILE).stat().st_mode & 0o077 == 0
