"""Sites as data: keys, hosts and read tokens, and the directory requests are checked against."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.sites import (
    READ_TOKEN_PREFIX,
    SiteDirectory,
    SiteRecord,
    mint_read_token,
    new_site,
    seed_sites,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def directory(*sites: SiteRecord) -> SiteDirectory:
    return SiteDirectory({site.site_id: site for site in sites})


def test_a_read_token_reads_its_site_and_is_kept_only_as_a_digest() -> None:
    minted = mint_read_token("analyst", NOW)
    site = new_site("shop", NOW).with_token(minted.record, NOW)
    assert minted.token.startswith(READ_TOKEN_PREFIX)
    assert minted.token.rpartition("_")[2] not in site.to_bytes().decode()
    assert directory(site).reader_of(minted.token) == "shop"


def test_a_changed_revoked_or_foreign_token_reads_nothing() -> None:
    minted = mint_read_token("", NOW)
    site = new_site("shop", NOW).with_token(minted.record, NOW)
    sites = directory(site)
    token_id = minted.record.token_id
    assert sites.reader_of(minted.token[:-1] + ("A" if minted.token[-1] != "A" else "B")) is None
    assert sites.reader_of(f"{READ_TOKEN_PREFIX}{token_id}_") is None
    assert sites.reader_of(mint_read_token("", NOW).token) is None
    assert sites.reader_of(site.write_keys[0]) is None
    assert directory(site.without_token(token_id, NOW)).reader_of(minted.token) is None


def test_rotating_the_write_key_retires_every_previous_key() -> None:
    site = new_site("shop", NOW, write_keys=["old-1", "old-2"])
    assert directory(site).write_keys == {"old-1": "shop", "old-2": "shop"}
    assert directory(site.with_write_key("new", NOW)).write_keys == {"new": "shop"}


def test_new_sites_get_a_fresh_write_key_and_bad_ids_or_hosts_are_refused() -> None:
    first, second = new_site("a", NOW), new_site("b", NOW)
    assert first.write_keys != second.write_keys and first.write_keys[0].startswith("wk_")
    for bad_id in ("", "a b", "../x", "x" * 101):
        with pytest.raises(msgspec.ValidationError):
            new_site(bad_id, NOW)
    with pytest.raises(msgspec.ValidationError):
        new_site("shop", NOW, hosts=["<script>"])
    assert new_site("shop", NOW, hosts=["*.shop.example", "shop.example:8443"]).hosts


def test_the_environment_seeds_one_site_per_id_with_all_its_keys_and_hosts() -> None:
    seeded = seed_sites({"k1": "shop", "k2": "shop", "k3": "blog"}, {"shop": ["shop.example"]}, NOW)
    assert [(s.site_id, s.write_keys, s.hosts) for s in seeded] == [
        ("blog", ("k3",), ()),
        ("shop", ("k1", "k2"), ("shop.example",)),
    ]
    assert directory(*seeded).site_hosts == {"shop": ["shop.example"]}


def test_a_site_record_reads_back_the_same() -> None:
    site = new_site("shop", NOW, hosts=["shop.example"]).with_token(
        mint_read_token("x", NOW).record, NOW
    )
    assert SiteRecord.from_bytes(site.to_bytes()) == site
