"""The bytes of the sessionizer's own topics: its changelogs and the journeys topic. The Kafka
edge (`worker`) writes and reads through these; the stages deal in plain data.

Changelog records (version 1, the `*-changelog.v1` topics). Keys are the state's kind and its
key, joined by 0x1F; values are JSON (`changelog` has each row's layout), a tombstone for a
removed key:

- `i` site visitor: a device's identity row;
- `w`: the identity stage's clock, microseconds or null;
- `p` place: an event held to be put back in time order, as its record's JSON (`reorder`);
- `r`: the clock of that hold, microseconds or null;
- `j` site journey: a journey row;
- `q` site journey: the journey's records waiting for a hand-off, each as [kind, journey,
  event, other, watermark], the event as its record's JSON in a string;
- `h` site from into: stashed hand-offs, a list of journey rows (null: there was none);
- `u` partition: an events partition's clock as the journey stage heard it;
- `n`: the last serials the journey stage gave a journey and a session, as [journey, session]
  (`journey_number`).

Journeys-topic records: the routed record's kind, site, journey, other journey, watermark and
events partition travel as headers; the value is the event as the collector wrote it (`EVENT`),
a journey row (`HANDOFF`), or empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from contracts.events import Event
from services.sessionizer.stages import Routed, RoutedKind, StateChange, StateKind

_SEPARATOR = b"\x1f"
_PREFIX = {
    StateKind.IDENTITY: b"i",
    StateKind.CLOCK: b"w",
    StateKind.HELD: b"p",
    StateKind.HOLD_CLOCK: b"r",
    StateKind.JOURNEY: b"j",
    StateKind.WAITING: b"q",
    StateKind.HANDOFFS: b"h",
    StateKind.UPSTREAM: b"u",
    StateKind.SERIAL: b"n",
}
_KIND = {prefix: kind for kind, prefix in _PREFIX.items()}


def changelog_record(change: StateChange) -> tuple[bytes, bytes | None]:
    """A state change as a changelog record: key and value (None: a tombstone)."""
    kind, key, value = change.kind, change.key, change.value
    if kind in (StateKind.CLOCK, StateKind.HOLD_CLOCK, StateKind.SERIAL):
        return _PREFIX[kind], orjson.dumps(value)
    if kind in (StateKind.UPSTREAM, StateKind.HELD):
        (number,) = key
        encoded_number = _PREFIX[kind] + _SEPARATOR + b"%d" % number
        if kind is StateKind.HELD:
            return encoded_number, None if value is None else value.to_bytes()
        return encoded_number, orjson.dumps(value)
    encoded_key = _SEPARATOR.join([_PREFIX[kind], *(part.encode() for part in key)])
    if value is None:
        return encoded_key, None
    if kind is StateKind.WAITING:
        return encoded_key, orjson.dumps([_waiting_row(routed) for routed in value])
    return encoded_key, orjson.dumps(value)


def state_change(key: bytes, value: bytes | None) -> StateChange:
    """A changelog record read back."""
    prefix, _, rest = key.partition(_SEPARATOR)
    kind = _KIND[prefix]
    if kind is StateKind.HELD:
        return StateChange(kind, (int(rest),), None if value is None else Event.from_bytes(value))
    loaded = None if value is None else orjson.loads(value)
    if kind in (StateKind.CLOCK, StateKind.HOLD_CLOCK, StateKind.SERIAL):
        return StateChange(kind, (), loaded)
    if kind is StateKind.UPSTREAM:
        return StateChange(kind, (int(rest),), loaded)
    parts = tuple(part.decode() for part in rest.split(_SEPARATOR))
    if kind is StateKind.WAITING and loaded is not None:
        site = parts[0]
        loaded = [_from_waiting_row(site, row) for row in loaded]
    return StateChange(kind, parts, loaded)


def _waiting_row(routed: Routed) -> list[Any]:
    event = None if routed.event is None else routed.event.to_bytes().decode()
    return [routed.kind.value, routed.journey_id, event, routed.other, routed.watermark]


def _from_waiting_row(site_id: str, row: list[Any]) -> Routed:
    kind, journey_id, event, other, watermark = row
    return Routed(
        RoutedKind(kind), site_id, journey_id,
        event=None if event is None else Event.from_bytes(event.encode()),
        other=other, watermark=watermark,
    )  # fmt: skip


def routed_headers(routed: Routed) -> list[tuple[str, bytes]]:
    """A routed record's Kafka headers: everything but the event or the handed-off state."""
    headers = [("kind", routed.kind.value.encode())]
    if routed.kind is not RoutedKind.WATERMARK:
        headers += [("site", routed.site_id.encode()), ("journey", routed.journey_id.encode())]
    if routed.other is not None:
        headers.append(("other", routed.other.encode()))
    if routed.watermark is not None:
        headers.append(("watermark", b"%d" % routed.watermark))
    if routed.upstream is not None:
        headers.append(("upstream", b"%d" % routed.upstream))
    return headers


def routed_value(routed: Routed) -> bytes:
    if routed.kind is RoutedKind.EVENT:
        assert routed.event is not None
        return routed.event.to_bytes()
    if routed.kind is RoutedKind.HANDOFF:
        return orjson.dumps(routed.state)
    return b""


def routed_from_record(value: bytes, headers: Iterable[tuple[str, bytes]]) -> Routed:
    fields = dict(headers)
    kind = RoutedKind(fields["kind"].decode())
    other, watermark = fields.get("other"), fields.get("watermark")
    upstream = fields.get("upstream")
    return Routed(
        kind,
        fields.get("site", b"").decode(),
        fields.get("journey", b"").decode(),
        event=Event.from_bytes(value) if kind is RoutedKind.EVENT else None,
        other=None if other is None else other.decode(),
        watermark=None if watermark is None else int(watermark),
        upstream=None if upstream is None else int(upstream),
        state=orjson.loads(value) if kind is RoutedKind.HANDOFF else None,
    )
