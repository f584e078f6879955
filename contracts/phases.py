"""Journey phase models: which phases a shop's journey has, and which events move a customer.

Shops disagree on the phase list (docs/data-model.md), so a model is a TOML file: the presets in
`contracts/phase_models/` or a shop's own, chosen with KLANTREIS_PHASE_MODEL. The sessionizer asks
a model where an event puts a journey and when a quiet journey has dropped off; the read API asks
it for the phase order of the funnel.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from contracts.events import Event, EventType

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_CLASSIFICATIONS_KEPT = 50_000


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `14d`, `2w`."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h or 14d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Condition:
    """Matches an event when every given field matches (a list field matches any of its items)."""

    events: frozenset[str] = frozenset()
    types: frozenset[EventType] = frozenset()
    channels: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        # PhaseModel keeps answers per (type, event, channel, page path): read nothing else.
        if self.events and (event.type is not EventType.TRACK or event.event not in self.events):
            return False
        if self.types and event.type not in self.types:
            return False
        if self.channels and event.channel not in self.channels:
            return False
        if self.paths:
            path = event.context.page.path or ""
            if not any(path == prefix or path.startswith(prefix + "/") for prefix in self.paths):
                return False
        return True

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str) -> Condition:
        known = {"events", "types", "channels", "paths"}
        condition = cls(
            events=frozenset(raw.get("events", ())),
            types=frozenset(EventType(t) for t in raw.get("types", ())),
            channels=frozenset(raw.get("channels", ())),
            paths=tuple(p.rstrip("/") for p in raw.get("paths", ())),
        )
        if not any(raw.get(field) for field in known):
            raise ValueError(f"{where} needs at least one of {sorted(known)}")
        return condition


@dataclass(frozen=True)
class PhaseRule:
    phase: str
    when: Condition


@dataclass(frozen=True)
class Touchpoint:
    name: str
    when: Condition


@dataclass(frozen=True)
class PhaseModel:
    """An ordered list of phases and the rules that map events onto them.

    A journey enters at `phases[0]` with its first event unless a rule places that event later.
    An event no rule matches leaves the journey where it is. A second order puts a customer in
    `repeat_purchase_phase`. A journey quiet for `dropoff[phase]` has dropped off there; an add
    to cart with no order within `cart_abandon_after` is an abandoned cart.
    """

    name: str
    description: str
    phases: tuple[str, ...]
    rules: tuple[PhaseRule, ...]
    touchpoints: tuple[Touchpoint, ...]
    order_events: frozenset[str]
    repeat_purchase_phase: str | None
    dropoff: dict[str, timedelta]
    cart_add_events: frozenset[str]
    cart_abandon_after: timedelta | None
    _classifications: dict[tuple[Any, ...], tuple[str | None, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if len(set(self.phases)) != len(self.phases) or not self.phases:
            raise ValueError(f"phase model {self.name!r}: phases must be unique and non-empty")
        named = {rule.phase for rule in self.rules} | set(self.dropoff)
        if self.repeat_purchase_phase is not None:
            named.add(self.repeat_purchase_phase)
        unknown = named - set(self.phases)
        if unknown:
            raise ValueError(f"phase model {self.name!r}: names unknown phases {sorted(unknown)}")

    def index(self, phase: str) -> int:
        return self.phases.index(phase)

    def phase_of(self, event: Event) -> str | None:
        return self._classified(event)[0]

    def touchpoint_of(self, event: Event) -> str:
        return self._classified(event)[1]

    def _classified(self, event: Event) -> tuple[str | None, str]:
        """The event's phase and touchpoint. `Condition.matches` reads only the event's type,
        name, channel and page path, and a shop's events repeat few combinations of those, so
        the answers are kept per combination: walking every rule for every event cost the
        engine about 2 us of its 30 per event."""
        key = (event.type, event.event, event.channel, event.context.page.path)
        found = self._classifications.get(key)
        if found is None:
            if len(self._classifications) >= _CLASSIFICATIONS_KEPT:
                self._classifications.clear()  # bounded: paths can be many
            phase = next((r.phase for r in self.rules if r.when.matches(event)), None)
            touchpoint = next(
                (t.name for t in self.touchpoints if t.when.matches(event)),
                "page" if event.type is EventType.PAGE else (event.event or event.type.value),
            )
            found = self._classifications[key] = (phase, touchpoint)
        return found

    def is_order(self, event: Event) -> bool:
        return event.type is EventType.TRACK and event.event in self.order_events

    def is_cart_add(self, event: Event) -> bool:
        return event.type is EventType.TRACK and event.event in self.cart_add_events

    @classmethod
    def from_toml(cls, text: str, source: str = "<model>") -> PhaseModel:
        raw = tomllib.loads(text)
        try:
            cart = raw.get("cart", {})
            return cls(
                name=raw["name"],
                description=raw.get("description", ""),
                phases=tuple(raw["phases"]),
                rules=tuple(
                    PhaseRule(rule["phase"], Condition.parse(rule, f"{source}: rules[{i}]"))
                    for i, rule in enumerate(raw.get("rules", ()))
                ),
                touchpoints=tuple(
                    Touchpoint(t["name"], Condition.parse(t, f"{source}: touchpoints[{i}]"))
                    for i, t in enumerate(raw.get("touchpoints", ()))
                ),
                order_events=frozenset(raw.get("order_events", ())),
                repeat_purchase_phase=raw.get("repeat_purchase_phase"),
                dropoff={
                    phase: parse_duration(value) for phase, value in raw.get("dropoff", {}).items()
                },
                cart_add_events=frozenset(cart.get("add_events", ())),
                cart_abandon_after=(
                    parse_duration(cart["abandon_after"]) if "abandon_after" in cart else None
                ),
            )
        except KeyError as exc:
            raise ValueError(f"{source}: missing {exc.args[0]!r}") from None


def preset_names() -> list[str]:
    folder = resources.files("contracts.phase_models")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_phase_model(name_or_path: str) -> PhaseModel:
    """A preset by name (`default`, `iab`, `five_stages`, `digital`) or a TOML file's path."""
    if name_or_path in preset_names():
        text = (resources.files("contracts.phase_models") / f"{name_or_path}.toml").read_text()
        return PhaseModel.from_toml(text, f"preset {name_or_path}")
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"phase model {name_or_path!r} is neither a preset ({', '.join(preset_names())}) "
            "nor a TOML file"
        )
    return PhaseModel.from_toml(path.read_text(), str(path))


DEFAULT_PHASE_MODEL = load_phase_model("default")
