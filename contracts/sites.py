"""Sites as data: each site's write keys, the page hosts it allows, and its read tokens.

Two kinds of secret, never confused:

- a *write key* is public (it sits in the shop's pages) and can only send events. It is kept as
  is, because every collector looks it up on every request;
- a *read token* reads one site's figures. It is shown once, when it is made; only the SHA-256
  digest of its secret is kept. A token reads `kr_read_<id>_<secret>`: the id finds the kept
  digest without a lookup that depends on the secret, and the secrets are compared in constant
  time.

The admin token (`KLANTREIS_ADMIN_TOKEN`) is the third: it manages sites and reads all of them.
Pure: the stores that keep these records are in `contracts/sitestore.py`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

import msgspec

from contracts.events import KafkaRecord, UtcDatetime

READ_TOKEN_PREFIX = "kr_read_"
WRITE_KEY_PREFIX = "wk_"

SiteId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
Host = Annotated[str, msgspec.Meta(pattern=r"^(\*\.)?[A-Za-z0-9.-]{1,253}(:\d{1,5})?$")]


def digest(secret: str) -> str:
    """What is kept of a secret: its SHA-256. The secrets klantreis makes carry 256 random bits,
    so a fast hash is as safe as a slow one and costs nothing per request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def basic_user(credentials: str) -> str:
    """The user name of HTTP Basic credentials (what follows `Basic `): how Segment's libraries
    send a write key. Raises ValueError when they are not valid HTTP Basic."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not valid HTTP Basic credentials") from None
    return decoded.partition(":")[0]


def same_secret(given: str, kept_digest: str) -> bool:
    """Whether `given` is the secret `kept_digest` was made from, in constant time."""
    return hmac.compare_digest(digest(given), kept_digest)


class ReadToken(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token_id: str
    name: str
    digest: str
    created_at: UtcDatetime


class SiteRecord(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    """One site as every collector and read API knows it: the newest record of a site wins.

    Its privacy settings (docs/privacy.md): `cookieless`, the collector derives each event's
    anonymous id from a daily salt, the site, the user agent and the truncated address;
    `require_consent`, an event without `context.consent: true` is not stored; `honour_dnt`, a
    request with `DNT: 1` or `Sec-GPC: 1` is not stored."""

    site_id: SiteId
    write_keys: tuple[str, ...] = ()
    hosts: tuple[Host, ...] = ()
    read_tokens: tuple[ReadToken, ...] = ()
    cookieless: bool = False
    require_consent: bool = False
    honour_dnt: bool = False
    updated_at: UtcDatetime

    @property
    def partition_key(self) -> bytes:
        return self.site_id.encode()

    def with_write_key(self, key: str, now: datetime) -> SiteRecord:
        """The site with `key` as its only write key: the previous ones stop working."""
        return msgspec.structs.replace(self, write_keys=(key,), updated_at=now)

    def with_hosts(self, hosts: Iterable[str], now: datetime) -> SiteRecord:
        return msgspec.structs.replace(self, hosts=tuple(hosts), updated_at=now)

    def with_privacy(
        self, cookieless: bool, require_consent: bool, honour_dnt: bool, now: datetime
    ) -> SiteRecord:
        return msgspec.structs.replace(
            self,
            cookieless=cookieless,
            require_consent=require_consent,
            honour_dnt=honour_dnt,
            updated_at=now,
        )

    def with_token(self, token: ReadToken, now: datetime) -> SiteRecord:
        return msgspec.structs.replace(self, read_tokens=(*self.read_tokens, token), updated_at=now)

    def without_token(self, token_id: str, now: datetime) -> SiteRecord:
        kept = tuple(token for token in self.read_tokens if token.token_id != token_id)
        return msgspec.structs.replace(self, read_tokens=kept, updated_at=now)


SALT_KEY_PREFIX = "salt/"


class DailySalt(KafkaRecord, frozen=True, kw_only=True, tag_field="schema_version", tag=1):
    """The salt of cookieless visitor ids for one UTC day, the same for every collector. Only
    today's is kept: once the day is over it can match no new request, so it is destroyed, and
    ids of two days cannot be linked."""

    day: date
    salt: str  # hex

    @property
    def partition_key(self) -> bytes:
        return salt_key(self.day)


def salt_key(day: date) -> bytes:
    return f"{SALT_KEY_PREFIX}{day.isoformat()}".encode()


def new_salt(day: date) -> DailySalt:
    return DailySalt(day=day, salt=secrets.token_hex(32))


def new_site(
    site_id: str, now: datetime, hosts: Iterable[str] = (), write_keys: Iterable[str] = ()
) -> SiteRecord:
    """A new site with the write keys given, else a fresh one; validated as a record is
    (`msgspec.ValidationError` names a bad id or host)."""
    record = SiteRecord(
        site_id=site_id,
        write_keys=tuple(write_keys) or (new_write_key(),),
        hosts=tuple(hosts),
        updated_at=now,
    )
    return validated(record)


def validated(site: SiteRecord) -> SiteRecord:
    """The site as every reader will decode it: `msgspec.ValidationError` names a bad id or
    host (a Struct built in Python is not checked against its patterns)."""
    return SiteRecord.from_bytes(site.to_bytes())


def new_write_key() -> str:
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class MintedToken:
    """A new read token: `token` is shown to its owner once; `record` is what is kept."""

    token: str
    record: ReadToken


def mint_read_token(name: str, now: datetime) -> MintedToken:
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ReadToken(token_id=token_id, name=name, digest=digest(secret), created_at=now)
    return MintedToken(f"{READ_TOKEN_PREFIX}{token_id}_{secret}", record)


def _split_read_token(token: str) -> tuple[str, str] | None:
    if not token.startswith(READ_TOKEN_PREFIX):
        return None
    token_id, _, secret = token[len(READ_TOKEN_PREFIX) :].partition("_")
    return (token_id, secret) if token_id and secret else None


class SiteDirectory:
    """Every site of an installation, indexed for the questions asked per request."""

    def __init__(self, sites: Mapping[str, SiteRecord]) -> None:
        self.sites: dict[str, SiteRecord] = dict(sites)
        self.write_keys: dict[str, str] = {
            key: site.site_id for site in self.sites.values() for key in site.write_keys
        }
        self.site_hosts: dict[str, list[str]] = {
            site.site_id: list(site.hosts) for site in self.sites.values() if site.hosts
        }
        self._tokens: dict[str, tuple[str, ReadToken]] = {
            token.token_id: (site.site_id, token)
            for site in self.sites.values()
            for token in site.read_tokens
        }

    @property
    def site_ids(self) -> frozenset[str]:
        return frozenset(self.sites)

    def reader_of(self, token: str) -> str | None:
        """The site a read token reads, or None when it is no valid read token."""
        parts = _split_read_token(token)
        if parts is None:
            return None
        kept = self._tokens.get(parts[0])
        if kept is None:
            return None
        site_id, record = kept
        return site_id if same_secret(parts[1], record.digest) else None


def seed_sites(
    write_keys: Mapping[str, str], hosts: Mapping[str, list[str]], now: datetime
) -> list[SiteRecord]:
    """The sites `KLANTREIS_SITES` and `KLANTREIS_SITE_HOSTS` describe, for a store's first
    start."""
    keys_of: dict[str, list[str]] = {}
    for key, site_id in write_keys.items():
        keys_of.setdefault(site_id, []).append(key)
    return [
        new_site(site_id, now, hosts.get(site_id, ()), keys)
        for site_id, keys in sorted(keys_of.items())
    ]
