"""Pseudonymous customer ids: a keyed hash of a site's user id, made before anything is stored.

With `KLANTREIS_PSEUDONYMIZE_USER_IDS`, the collector replaces each event's `user_id` (and every
trait value that looks like an e-mail address) with its pseudonym, so no topic, state or table
holds the address; the read API hashes the id it is asked about the same way. The key makes the
pseudonyms unguessable: without it, no one can hash a list of known addresses and match them.
The site is part of the hash, so one person has unrelated pseudonyms in two shops.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

PSEUDONYM_PREFIX = "u_"
_EMAIL = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}\.[^@\s]{1,63}$")


def looks_like_email(value: object) -> bool:
    return isinstance(value, str) and _EMAIL.match(value.strip()) is not None


class Pseudonyms:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def of(self, site_id: str, user_id: str) -> str:
        """The pseudonym of `user_id` in `site_id`: `u_` and 128 bits of HMAC-SHA256."""
        mac = hmac.new(self._key, f"{site_id}\x00{user_id}".encode(), hashlib.sha256)
        return PSEUDONYM_PREFIX + mac.hexdigest()[:32]

    def traits(self, site_id: str, traits: dict[str, Any]) -> dict[str, Any]:
        """The traits with every e-mail-looking value replaced by its pseudonym."""
        if not any(looks_like_email(value) for value in traits.values()):
            return traits
        return {
            name: self.of(site_id, value) if looks_like_email(value) else value
            for name, value in traits.items()
        }
