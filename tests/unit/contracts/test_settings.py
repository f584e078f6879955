from __future__ import annotations

from pathlib import Path

import pytest

from contracts.settings import ConfigurationError, load_settings


def test_defaults_run_embedded_with_the_demo_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLANTREIS_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = load_settings()
    assert settings.embedded
    assert settings.write_keys == {"demo": "demo"}
    assert settings.port == 8080
    assert settings.resolved_clickhouse_dsn == f"chdb://{Path('var/chdb').resolve()}"


def test_with_kafka_there_is_no_default_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLANTREIS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    settings = load_settings()
    assert not settings.embedded
    assert settings.write_keys == {}


def test_sites_and_port_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLANTREIS_SITES", '{"wk_live_1": "shop-a", "wk_live_2": "shop-b"}')
    monkeypatch.setenv("PORT", "9000")
    settings = load_settings()
    assert settings.site_ids == {"shop-a", "shop-b"}
    assert settings.port == 9000


def test_an_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("KLANTREIS_SESSION_TIMEOUT_MINUTES", "-5")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "PORT:" in str(caught.value)
    assert "KLANTREIS_SESSION_TIMEOUT_MINUTES:" in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_a_service_without_kafka_says_which_variable_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KLANTREIS_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigurationError, match="KLANTREIS_KAFKA_BOOTSTRAP_SERVERS"):
        load_settings().require_kafka()


def test_a_copy_of_the_settings_with_another_prefix_names_its_own_topics() -> None:
    settings = load_settings()
    other = settings.model_copy(update={"topic_prefix": "other"})
    assert (settings.topics.events, other.topics.events) == (
        "klantreis.events.v1",
        "other.events.v1",
    )


def test_outside_embedded_mode_the_read_api_needs_an_admin_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KLANTREIS_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("KLANTREIS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with pytest.raises(ConfigurationError) as caught:
        load_settings().require_admin_token()
    assert "KLANTREIS_ADMIN_TOKEN" in str(caught.value) and "openssl rand" in str(caught.value)


@pytest.mark.parametrize("token", ["changeme", "CHANGE-ME-PLEASE-0123456789", "password", "short"])
def test_a_placeholder_admin_token_is_refused(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLANTREIS_ADMIN_TOKEN", token)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "KLANTREIS_ADMIN_TOKEN:" in str(caught.value)
    assert token not in str(caught.value)  # a secret is never echoed


def test_the_admin_token_may_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "admin"
    secret.write_text("adm-7d1f0c9e2b6a4d83a5c7e1f0b2d4\n")
    monkeypatch.delenv("KLANTREIS_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("KLANTREIS_ADMIN_TOKEN_FILE", str(secret))
    assert load_settings().require_admin_token() == "adm-7d1f0c9e2b6a4d83a5c7e1f0b2d4"
    secret.write_text("changeme\n")
    with pytest.raises(ConfigurationError, match="ADMIN_TOKEN_FILE"):
        load_settings().require_admin_token()
    monkeypatch.setenv("KLANTREIS_ADMIN_TOKEN", "adm-7d1f0c9e2b6a4d83a5c7e1f0b2d4")
    with pytest.raises(ConfigurationError, match="not both"):
        load_settings()
