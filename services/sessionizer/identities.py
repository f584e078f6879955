"""Stage 1: which journey an event belongs to, per device, and duplicates dropped. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts.events import Event, EventType
from contracts.journeys import IdentityLink, LinkKind, derived_id
from services.sessionizer.changelog import identity_from_row, identity_row
from services.sessionizer.model import IdentityState
from services.sessionizer.store import TrackedState

DEDUP_WINDOW = 16  # event ids remembered per device: a retried batch is caught within it


def _event_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=4).digest()


@dataclass(frozen=True)
class Resolution:
    """What stage 1 made of an event: its journey (None: a duplicate, dropped), the identity
    link it established, and the journey whose history now belongs to the customer."""

    journey_id: str | None
    link: IdentityLink | None = None
    merge_from: str | None = None


class IdentityResolver:
    """Which journey an event belongs to.

    An anonymous id's first login claims its history for that customer (`linked`). A device
    already linked that logs in as someone else is relinked for later events only: two customers
    are never merged by a login. An alias merges explicitly. Placeholder ids never get here (the
    collector refuses them).
    """

    def __init__(self) -> None:
        self.states: TrackedState[tuple[str, str], IdentityState] = TrackedState()
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self.states)

    def resolve(self, event: Event) -> Resolution:
        key = (event.site_id, event.visitor_id)
        state = self.states.get(key) or IdentityState()
        digest = _event_hash(event.event_id)
        if any(state.recent[i : i + 4] == digest for i in range(0, len(state.recent), 4)):
            self.duplicates += 1
            return Resolution(journey_id=None)
        state.recent = (state.recent + digest)[-4 * DEDUP_WINDOW :]
        self.states.put(key, state)

        visitor = event.visitor_id
        customer = event.user_id
        if customer is None or customer == visitor:
            return Resolution(journey_id=state.customer or visitor)
        if event.type is EventType.ALIAS:
            kind = LinkKind.ALIASED
        elif state.customer is None:
            kind = LinkKind.LINKED
        elif state.customer != customer:
            kind = LinkKind.RELINKED
        else:
            return Resolution(journey_id=customer)
        state.customer = customer
        link = IdentityLink(
            link_id=derived_id(event.site_id, visitor, customer, event.event_id),
            site_id=event.site_id,
            previous_id=visitor,
            customer_id=customer,
            kind=kind,
            at=event.timestamp,
            event_id=event.event_id,
        )
        merge_from = None if kind is LinkKind.RELINKED else visitor
        return Resolution(journey_id=customer, link=link, merge_from=merge_from)

    def forget(self, site_id: str, visitor_id: str) -> None:
        """Erase a device's or customer's identity: its next event starts a new, unlinked
        history."""
        self.states.pop((site_id, visitor_id))

    # --- state --------------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[tuple[str, str], list[Any] | None]]:
        """The states changed since the last call, as changelog rows (None: erased)."""
        return [
            (key, None if state is None else identity_row(state))
            for key, state in self.states.take_changes()
        ]

    def apply_row(self, key: tuple[str, str], row: list[Any] | None) -> None:
        self.states.load(key, None if row is None else identity_from_row(row))

    def export_state(self) -> list[list[Any]]:
        return [[*key, *identity_row(state)] for key, state in self.states.items()]

    def restore_state(self, rows: Iterable[list[Any]]) -> None:
        for site, visitor, *row in rows:
            self.apply_row((site, visitor), row)
