"""Pseudonymous customer ids: made in the collector, before anything is stored."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from contracts.pseudonyms import Pseudonyms, looks_like_email
from services.ingest.intake import intake

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
KEY = Pseudonyms("k" * 32)


def test_the_user_id_and_e_mail_traits_become_pseudonyms_and_the_rest_stays() -> None:
    login = {
        "type": "identify",
        "anonymous_id": "device-1",
        "user_id": "carol@example.com",
        "traits": {"email": "Carol@Example.com", "plan": "gold", "age": 41},
    }
    (event,) = intake([login], "shop", NOW, 32 * 1024, KEY).events
    assert event.user_id == KEY.of("shop", "carol@example.com")
    assert event.anonymous_id == "device-1"
    assert event.traits == {"email": KEY.of("shop", "Carol@Example.com"), "plan": "gold", "age": 41}
    assert "example.com" not in event.to_bytes().decode()


def test_a_pseudonym_is_stable_per_site_and_key_and_unrelated_across_them() -> None:
    assert KEY.of("shop", "carol") == KEY.of("shop", "carol")
    assert KEY.of("shop", "carol") != KEY.of("other-shop", "carol")
    assert Pseudonyms("x" * 32).of("shop", "carol") != KEY.of("shop", "carol")
    assert KEY.of("shop", "carol").startswith("u_") and len(KEY.of("shop", "carol")) == 34


def test_an_alias_from_an_address_links_pseudonyms_and_keeps_anonymous_ids() -> None:
    moved = {"type": "alias", "previous_id": "old@example.com", "user_id": "new@example.com"}
    claimed = {"type": "alias", "previous_id": "device-7", "user_id": "new@example.com"}
    first, second = intake([moved, claimed], "shop", NOW, 32 * 1024, KEY).events
    assert first.previous_id == KEY.of("shop", "old@example.com")
    assert second.previous_id == "device-7"
    assert first.user_id == second.user_id == KEY.of("shop", "new@example.com")


def test_a_refused_event_is_kept_without_the_address_or_the_customer_id() -> None:
    refused = [
        {"type": "track", "user_id": "carol@example.com", "properties": {"to": "bob@shop.nl"}},
        {"type": "track", "user_id": "customer-81"},
    ]
    letters = intake(refused, "shop", NOW, 32 * 1024, KEY).dead_letters
    first, second = (orjson.loads(letter.payload) for letter in letters)
    assert first["user_id"] == KEY.of("shop", "carol@example.com")
    assert first["properties"]["to"] == KEY.of("shop", "bob@shop.nl")
    assert second["user_id"] == KEY.of("shop", "customer-81")


def test_what_looks_like_an_e_mail_address() -> None:
    assert looks_like_email("a.b+c@shop.example.nl")
    assert not any(map(looks_like_email, ["carol", "a@b", "@shop.nl", "a b@c.nl", 42, None]))
