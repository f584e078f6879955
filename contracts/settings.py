"""The one configuration of every klantreis process, read from the environment.

All services import :func:`load_settings`; a bad value stops the process at start-up with a
message naming the variable, instead of failing later on the first event that needs it.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.records import CATALOGUE
from contracts.topics import Topics

if TYPE_CHECKING:
    from contracts.phases import PhaseModel

ENV_PREFIX = "KLANTREIS_"

# Days a row of each table is kept after it was stored. Raw rows describe people, so they do
# not stay for ever by default: 400 days covers a year-on-year comparison; dead letters are for
# debugging a tracking setup. The daily aggregates hold counts, not people, and have no TTL.
DEFAULT_RETENTION_DAYS: dict[str, int] = {kind.table: 400 for kind in CATALOGUE} | {
    "dead_letters": 30
}


class ConfigurationError(Exception):
    """Raised at start-up when the environment holds an invalid setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    # --- where things run
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: `klantreis up` runs embedded, without Kafka.",
    )
    data_dir: Path = Field(default=Path("var"), description="Embedded ClickHouse and state.")
    clickhouse_dsn: str | None = Field(
        default=None,
        description="chdb:///path (embedded, the default under data_dir) or http://host:8123.",
    )
    clickhouse_database: str = Field(default="klantreis", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clickhouse_cluster: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="A ClickHouse cluster's name: Replicated + Distributed tables ON CLUSTER.",
    )

    # --- HTTP
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8080, validation_alias=AliasChoices("PORT", "KLANTREIS_PORT")
    )
    sessionizer_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8081, description="The sessionizer's /metrics; 0: none."
    )
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8082
    ingest_ops_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9080,
        description="The collector's /metrics, /docs, /openapi.json and probes, apart from its "
        "public port; 0: all on the public port. Embedded mode serves all on one port.",
    )
    api_ops_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9082,
        description="The read API's /metrics and probes, apart from its port; 0: on that port.",
    )

    # --- sites
    sites: dict[str, str] | None = Field(
        default=None,
        description='JSON object of write key -> site id, e.g. {"wk_live_123": "shop"}. '
        "Unset in embedded mode: the site `demo` with write key `demo`.",
    )

    site_hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON object of site id -> allowed page hosts, e.g. {"shop": ["shop.example", '
        '"*.shop.example"]}. Browsers on other hosts are refused (403) and get no CORS headers; '
        "a site without an entry accepts every host.",
    )

    admin_token: SecretStr | None = Field(
        default=None,
        description="Manages sites, tokens and erasure, and reads every site. Required outside "
        "embedded mode; embedded without one, a random token is kept in `data_dir/admin-token`.",
    )
    admin_token_file: Path | None = Field(
        default=None, description="A file holding the admin token (a mounted secret)."
    )

    pseudonymize_user_ids: bool = Field(
        default=False,
        description="Replace user ids (and e-mail-looking trait values) by a keyed hash per site "
        "in the collector, before Kafka: no topic, state or table holds the original.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="The key of that hash, the same for every collector and read API. Required "
        "with pseudonymize_user_ids outside embedded mode; embedded without one, a random key is "
        "kept in `data_dir/pseudonym-key`. Changing it gives every customer a new id.",
    )

    rate_limit_per_ip: Annotated[float, Field(ge=0)] = Field(
        default=50.0, description="Requests a second per client IP (twice that in a burst); 0: off."
    )
    rate_limit_per_site: Annotated[float, Field(ge=0)] = Field(
        default=5000.0, description="Events a second per site (twice that in a burst); 0: off."
    )
    forwarded_for_hops: Annotated[int, Field(ge=0, le=16)] = Field(
        default=0,
        description="Proxies of yours in front of the collector that append to X-Forwarded-For: "
        "the client is the entry that many from the right. 0: the connection's address.",
    )
    trust_forwarded_for: bool = Field(
        default=False, description="The same as forwarded_for_hops=1 (one proxy in front)."
    )

    # --- connections (every HTTP server)
    max_connections: Annotated[int, Field(ge=16)] | None = Field(
        default=None,
        description="Open connections a server keeps; beyond it, a connection still sending its "
        "request is closed for the newcomer, or the newcomer gets a 503. Unset: three quarters "
        "of the file limit.",
    )
    header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        default=10.0,
        description="Time a request's headers may take to arrive, from the connection opening "
        "or the request's first byte; then 408 and the connection closes.",
    )
    body_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, description="Time a request's body may take to arrive after its headers."
    )
    keep_alive_seconds: Annotated[float, Field(ge=1, le=300)] = Field(
        default=5.0, description="An idle kept-alive connection closes after this long."
    )

    # --- Kafka
    topic_prefix: str = Field(default="klantreis", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 6
    topic_replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    produce_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 1.5

    # --- ingest limits (docs/event-api.md)
    max_body_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024
    max_event_bytes: Annotated[int, Field(ge=256)] = 32 * 1024
    max_batch_events: Annotated[int, Field(ge=1)] = 500
    max_amount: Annotated[float, Field(gt=0, le=1e15)] = Field(
        default=1e9,
        description="The largest revenue, price or other amount an event may carry.",
    )

    # --- journeys
    phase_model: str = Field(
        default="default",
        description="A preset (default, iab, five_stages, digital) or the path of a TOML model.",
    )
    session_timeout_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 30.0
    max_session_hours: Annotated[float, Field(gt=0, le=7 * 24)] = 12.0
    allowed_lateness_minutes: Annotated[float, Field(ge=0, le=24 * 60)] = 10.0
    reorder_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        default=2.0,
        description="How long the sessionizer holds each event to put the events of a stream "
        "back in time order (requests of one page load overtake each other); a journey's "
        "outputs appear this much later. 0: events are applied as they come.",
    )
    sessionizer_max_poll_records: Annotated[int, Field(ge=1)] = 10_000
    idle_after_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=10.0,
        description="With no event for this long (wall clock) and nothing left to read, the "
        "sessionizer's event-time clock follows the wall clock, so drop-offs and abandoned carts "
        "fire without new traffic; 0: only events move it (held events still go by the wall "
        "clock).",
    )

    # --- retention
    retention_days: dict[str, Annotated[int, Field(ge=0, le=100 * 366)]] = Field(
        default_factory=dict,
        description="JSON object of table -> days a row is kept after it was stored (0: for "
        "ever); tables left out keep their default (DEFAULT_RETENTION_DAYS).",
    )

    # --- warehouse writes
    flush_rows: Annotated[int, Field(ge=1)] = 20000
    flush_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5

    @field_validator("kafka_bootstrap_servers", "clickhouse_dsn")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("phase_model")
    @classmethod
    def _phase_model_loads(cls, value: str) -> str:
        from contracts.phases import load_phase_model

        load_phase_model(value)
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention_of_known_tables(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(DEFAULT_RETENTION_DAYS))
        if unknown:
            raise ValueError(
                f"no table {', '.join(unknown)}; retention applies to "
                f"{', '.join(sorted(DEFAULT_RETENTION_DAYS))}"
            )
        return DEFAULT_RETENTION_DAYS | value

    @field_validator("admin_token")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            refuse_placeholder(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_admin_token(self) -> Settings:
        if self.admin_token is not None and self.admin_token_file is not None:
            raise ValueError("set admin_token or admin_token_file, not both")
        return self

    @model_validator(mode="after")
    def _lateness_within_a_session(self) -> Settings:
        if self.allowed_lateness_minutes > self.session_timeout_minutes:
            raise ValueError(
                "allowed_lateness_minutes must not exceed session_timeout_minutes: a late event "
                "must still fit in the session it belongs to"
            )
        return self

    @cached_property
    def phase_model_loaded(self) -> PhaseModel:
        from contracts.phases import load_phase_model

        return load_phase_model(self.phase_model)

    @property
    def topics(self) -> Topics:
        """This installation's topic names, under `topic_prefix`. Not cached: a copy of the
        settings with another prefix (`model_copy`) must name its own topics."""
        return Topics(prefix=self.topic_prefix)

    @property
    def proxy_hops(self) -> int:
        """How many X-Forwarded-For entries, from the right, your own proxies added."""
        return self.forwarded_for_hops or (1 if self.trust_forwarded_for else 0)

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @cached_property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"

    @cached_property
    def write_keys(self) -> dict[str, str]:
        """Write key -> site id. The demo site exists only when no site is configured, embedded."""
        if self.sites is not None:
            return dict(self.sites)
        return {"demo": "demo"} if self.embedded else {}

    @cached_property
    def site_ids(self) -> frozenset[str]:
        return frozenset(self.write_keys.values())

    def configured_admin_token(self) -> str | None:
        """The admin token from the environment or its file, if one is set; never logged."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        if self.admin_token_file is None:
            return None
        try:
            token = self.admin_token_file.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{ENV_PREFIX}ADMIN_TOKEN_FILE: cannot read {self.admin_token_file}: {exc.strerror}"
            ) from None
        try:
            refuse_placeholder(token)
        except ValueError as exc:
            raise ConfigurationError(f"{ENV_PREFIX}ADMIN_TOKEN_FILE: {exc}") from None
        return token

    def require_admin_token(self) -> str:
        """The admin token a process that serves the read API needs outside embedded mode."""
        token = self.configured_admin_token()
        if token is None:
            raise ConfigurationError(
                f"{ENV_PREFIX}ADMIN_TOKEN is not set. The read API needs an admin token outside "
                f"embedded mode: set {ENV_PREFIX}ADMIN_TOKEN to a random secret, e.g. "
                f"`export {ENV_PREFIX}ADMIN_TOKEN=$(openssl rand -hex 32)`, or name a file "
                f"holding one in {ENV_PREFIX}ADMIN_TOKEN_FILE"
            )
        return token

    def require_pseudonym_key(self) -> str | None:
        """The pseudonym key when user ids are pseudonymized (None when they are not)."""
        if not self.pseudonymize_user_ids:
            return None
        if self.pseudonym_key is None:
            raise ConfigurationError(
                f"{ENV_PREFIX}PSEUDONYMIZE_USER_IDS is on but {ENV_PREFIX}PSEUDONYM_KEY is not "
                "set: set it to a random secret shared by every collector and read API, e.g. "
                f"`export {ENV_PREFIX}PSEUDONYM_KEY=$(openssl rand -hex 32)`"
            )
        key = self.pseudonym_key.get_secret_value()
        if len(key) < MIN_ADMIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"{ENV_PREFIX}PSEUDONYM_KEY: use at least {MIN_ADMIN_TOKEN_LENGTH} random "
                "characters, e.g. `openssl rand -hex 32`"
            )
        return key

    def require_kafka(self) -> str:
        if self.kafka_bootstrap_servers is None:
            raise ConfigurationError(
                f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS is not set; this command needs a Kafka "
                "broker (`klantreis up` runs without one)"
            )
        return self.kafka_bootstrap_servers


PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "admin", "password", "secret", "token", "example",
     "placeholder", "replace-me", "todo", "xxx", "test", "klantreis"}
)  # fmt: skip
MIN_ADMIN_TOKEN_LENGTH = 24


def refuse_placeholder(token: str) -> None:
    """An admin token must be a real secret, not an example value left in place."""
    lowered = token.strip().lower()
    if (
        not lowered
        or lowered in PLACEHOLDERS
        or any(word in lowered for word in ("change", "replace"))
    ):
        raise ValueError(
            "the admin token is a placeholder; set a random secret, e.g. `openssl rand -hex 32`"
        )
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(
            f"the admin token is {len(token)} characters; use at least "
            f"{MIN_ADMIN_TOKEN_LENGTH} random ones, e.g. `openssl rand -hex 32`"
        )


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment; raise ConfigurationError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            variable = {"port": "PORT", "": "settings"}.get(field, f"{ENV_PREFIX}{field.upper()}")
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(problems)) from exc
