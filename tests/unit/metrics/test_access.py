"""Who a read request is, and what it may read: the order of the checks decides what a stranger
can learn."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from contracts.sites import SiteDirectory, digest, mint_read_token, new_site
from services.metrics.access import (
    Caller,
    ReadRefused,
    authorize_admin,
    authorize_read,
    identify,
    presented_token,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ADMIN = "adm-0123456789abcdef01234567"
SHOP_TOKEN = mint_read_token("", NOW)
SITES = SiteDirectory(
    {"shop": new_site("shop", NOW, write_keys=["wk_shop"]).with_token(SHOP_TOKEN.record, NOW)}
)


def refusal(call: object, *args: object) -> tuple[int, str]:
    with pytest.raises(ReadRefused) as refused:
        call(*args)  # type: ignore[operator]
    return refused.value.status, refused.value.error


def test_the_token_comes_from_bearer_basic_or_the_query() -> None:
    assert presented_token("Bearer abc", None) == "abc"
    assert presented_token("bearer abc", "ignored") == "abc"
    basic = "Basic " + base64.b64encode(b"wk_shop:").decode()
    assert presented_token(basic, None) == "wk_shop"
    assert presented_token(None, "from-link") == "from-link"
    assert presented_token(None, None) is None
    assert refusal(presented_token, "Token abc", None) == (401, "bad_authorization")
    assert refusal(presented_token, "Bearer ", None) == (401, "bad_authorization")


def test_each_kind_of_secret_names_its_caller() -> None:
    assert identify(ADMIN, SITES, digest(ADMIN)) == Caller("admin")
    assert identify(SHOP_TOKEN.token, SITES, digest(ADMIN)) == Caller("reader", "shop")
    assert refusal(identify, None, SITES, digest(ADMIN)) == (401, "missing_token")
    assert refusal(identify, "wk_shop", SITES, digest(ADMIN)) == (403, "write_key")
    assert refusal(identify, ADMIN + "x", SITES, digest(ADMIN)) == (401, "invalid_token")


def test_a_reader_is_refused_other_sites_before_learning_whether_they_exist() -> None:
    reader = Caller("reader", "shop")
    authorize_read(reader, "shop", SITES)
    assert refusal(authorize_read, reader, "other", SITES) == (403, "forbidden")
    assert refusal(authorize_read, reader, "missing", SITES) == (403, "forbidden")
    assert refusal(authorize_read, Caller("admin"), "missing", SITES) == (404, "unknown_site")
    authorize_read(Caller("admin"), "shop", SITES)


def test_only_the_admin_manages() -> None:
    authorize_admin(Caller("admin"))
    assert refusal(authorize_admin, Caller("reader", "shop")) == (403, "admin_only")
