"""The embedded pipeline's secrets, so `make run` needs no setup step.

Without `KLANTREIS_ADMIN_TOKEN`, a random admin token is made on the first start and kept in the
data directory (mode 0600). The demo site gets a read token on its first start, kept there too,
and every start prints a link that opens the demo site's figures, as Jupyter prints its token
URL. Outside embedded mode none of this happens: the admin token must be set.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from contracts.settings import Settings
from contracts.sites import mint_read_token
from contracts.sitestore import SiteStore, write_private

ADMIN_TOKEN_FILE = "admin-token"
DEMO_SITE = "demo"
DEMO_TOKEN_FILE = "demo-read-token"


def admin_token(settings: Settings) -> str:
    """The configured admin token, else the one kept in the data directory (made if absent)."""
    configured = settings.configured_admin_token()
    if configured is not None:
        return configured
    path = Path(settings.data_dir) / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    write_private(path, f"{token}\n".encode())
    return token


PSEUDONYM_KEY_FILE = "pseudonym-key"


def pseudonym_key(settings: Settings) -> str | None:
    """With pseudonymous user ids: the configured key, else the one kept in the data directory
    (made if absent). It must outlive every restart: a new key gives every customer a new id."""
    if not settings.pseudonymize_user_ids:
        return None
    if settings.pseudonym_key is not None:
        return settings.require_pseudonym_key()
    path = Path(settings.data_dir) / PSEUDONYM_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    write_private(path, f"{key}\n".encode())
    return key


async def demo_read_token(settings: Settings, sites: SiteStore) -> str | None:
    """The demo site's read token: the one kept in the data directory while it still reads the
    demo site, else a new one. None when there is no demo site (sites were configured)."""
    if DEMO_SITE not in sites.directory.site_ids:
        return None
    path = Path(settings.data_dir) / DEMO_TOKEN_FILE
    if path.exists():
        kept = path.read_text().strip()
        if sites.directory.reader_of(kept) == DEMO_SITE:
            return kept
    now = datetime.now(UTC)
    minted = mint_read_token("quick start", now)
    site = sites.directory.sites[DEMO_SITE]
    await sites.put(site.with_token(minted.record, now))
    write_private(path, f"{minted.token}\n".encode())
    return minted.token


def local_url(settings: Settings, port: int) -> str:
    """Where a process on this machine reaches a server bound to `settings.host`."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{port}"


def base_url(settings: Settings) -> str:
    return local_url(settings, settings.port)


def welcome(settings: Settings, read_token: str | None) -> str:
    """What `klantreis up` prints once it serves: where to send events and a link to read."""
    url = base_url(settings)
    lines = [
        "",
        f"klantreis is running at {url} (data in {settings.data_dir})",
        f"  send events:   POST {url}/v1/events with the write key, see docs/event-api.md",
    ]
    if read_token is not None:
        lines.append(f"  dashboard:     {url}/?token={read_token}")
        lines.append(f"  demo figures:  {url}/api/v1/metrics?site={DEMO_SITE}&token={read_token}")
    admin_source = (
        "KLANTREIS_ADMIN_TOKEN"
        if settings.configured_admin_token() is not None
        else str(Path(settings.data_dir) / ADMIN_TOKEN_FILE)
    )
    lines.append(f"  admin token:   in {admin_source} (klantreis sites ... uses it)")
    return "\n".join(lines) + "\n"
