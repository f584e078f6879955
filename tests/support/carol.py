"""Carol, the customer the erasure tests erase: two devices and an order, among simulated
shoppers over ten days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from klantreis.simulator import generate_journeys

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
CAROL, PHONE, LAPTOP = "carol@example.com", "carol-phone-5e1f", "carol-laptop-77ab"


def at(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat()


CAROL_EVENTS: list[dict[str, Any]] = [
    {"type": "page", "anonymous_id": PHONE, "timestamp": at(30)},
    {"type": "track", "event": "Product Viewed", "anonymous_id": PHONE, "timestamp": at(30.1)},
    {"type": "identify", "anonymous_id": PHONE, "user_id": CAROL, "timestamp": at(30.2),
     "traits": {"email": CAROL}},
    {"type": "page", "anonymous_id": LAPTOP, "timestamp": at(60)},
    {"type": "track", "event": "Product Added", "anonymous_id": LAPTOP, "timestamp": at(60.1)},
    {"type": "identify", "anonymous_id": LAPTOP, "user_id": CAROL, "timestamp": at(60.2)},
    {"type": "track", "event": "Order Completed", "user_id": CAROL, "timestamp": at(60.3),
     "properties": {"revenue": 80, "order_id": "o-carol"}},
    {"type": "track", "anonymous_id": PHONE, "timestamp": at(61)},  # refused: no event name
]  # fmt: skip
LAST = {
    "type": "page",
    "anonymous_id": "clock",
    "timestamp": (NOW - timedelta(hours=1)).isoformat(),
}


def shop_events(visitors: int, with_carol: bool = True) -> list[dict[str, Any]]:
    """Simulated visitors over nine days, carol among them or not, in time order, and a last
    visit that moves event time past every timer."""
    others = [
        e for j in generate_journeys(8, visitors, 9, now=START + timedelta(days=9)) for e in j
    ]
    events = others + (CAROL_EVENTS if with_carol else [])
    return [*sorted(events, key=lambda e: datetime.fromisoformat(e["timestamp"])), LAST]
