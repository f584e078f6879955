"""Journey phase models: which phases a shop's journey has, and which events move a customer.

Shops disagree on the phase list (see docs/data-model.md), so a model is data. The sessionizer
asks it where an event puts a journey; the read API asks it for the phase order of the funnel.
"""

from __future__ import annotations

from dataclasses import dataclass

from klantreis.events import Event, EventType


@dataclass(frozen=True)
class PhaseRule:
    """Events of these types and (for tracks) names put a journey in `phase`."""

    phase: str
    event_names: frozenset[str] = frozenset()
    event_types: frozenset[EventType] = frozenset()

    def matches(self, event: Event) -> bool:
        if event.type in self.event_types:
            return True
        return event.type is EventType.TRACK and event.event in self.event_names


@dataclass(frozen=True)
class PhaseModel:
    """An ordered list of phases and the rules that map events onto them.

    A journey enters at `phases[0]` with its first event unless a rule places that event later.
    An event no rule matches leaves the journey where it is. `repeat_purchase_phase` is where a
    second purchase puts a customer (a returning buyer is past the purchase phase).
    """

    name: str
    phases: tuple[str, ...]
    rules: tuple[PhaseRule, ...]
    purchase_events: frozenset[str]
    repeat_purchase_phase: str | None

    def __post_init__(self) -> None:
        if len(set(self.phases)) != len(self.phases) or not self.phases:
            raise ValueError(f"phase model {self.name!r}: phases must be unique and non-empty")
        unknown = {rule.phase for rule in self.rules} - set(self.phases)
        if self.repeat_purchase_phase is not None:
            unknown |= {self.repeat_purchase_phase} - set(self.phases)
        if unknown:
            raise ValueError(f"phase model {self.name!r}: rules name unknown phases {unknown}")

    def index(self, phase: str) -> int:
        return self.phases.index(phase)

    def phase_of(self, event: Event) -> str | None:
        for rule in self.rules:
            if rule.matches(event):
                return rule.phase
        return None

    def is_purchase(self, event: Event) -> bool:
        return event.type is EventType.TRACK and event.event in self.purchase_events


# Event names follow the Segment e-commerce spec, the vocabulary shops' tools already send.
DEFAULT_PHASE_MODEL = PhaseModel(
    name="default",
    phases=("awareness", "consideration", "purchase", "retention", "advocacy"),
    rules=(
        PhaseRule(
            "consideration",
            event_names=frozenset(
                {
                    "Products Searched",
                    "Product List Viewed",
                    "Product List Filtered",
                    "Product Clicked",
                    "Product Viewed",
                    "Product Added to Wishlist",
                    "Promotion Clicked",
                    "Email Link Clicked",
                }
            ),
        ),
        PhaseRule(
            "purchase",
            event_names=frozenset(
                {
                    "Product Added",
                    "Cart Viewed",
                    "Checkout Started",
                    "Checkout Step Viewed",
                    "Checkout Step Completed",
                    "Payment Info Entered",
                    "Coupon Applied",
                    "Order Completed",
                }
            ),
        ),
        PhaseRule(
            "advocacy",
            event_names=frozenset({"Product Reviewed", "Product Shared", "Cart Shared"}),
        ),
    ),
    purchase_events=frozenset({"Order Completed"}),
    repeat_purchase_phase="retention",
)
