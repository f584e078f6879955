"""Generated event streams for property tests of the sessionizer."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st

from contracts.events import Event
from services.sessionizer.identities import DEDUP_WINDOW
from tests.support.factories import make_event

NAMES = [
    "Product Viewed",
    "Products Searched",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Product Reviewed",
    "Newsletter Opened",
]
VISITORS = ["phone", "laptop", "tablet"]
CUSTOMERS = [None, None, "alice", "bob"]


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Streams with gaps from seconds to weeks, events out of order, logins, aliases and
    retried (duplicate) events."""
    events: list[Event] = []
    originals: list[Event] = []  # the events that are not retries
    clock = timedelta(0)
    for _ in range(draw(st.integers(1, 40))):
        if events and draw(st.integers(0, 9)) == 0:
            # A retry of a recent event: ids are remembered for a device's last DEDUP_WINDOW
            # events, and a retry comes within seconds, not after the device's next 16.
            events.append(draw(st.sampled_from(originals[-DEDUP_WINDOW:])))
            continue
        step = draw(st.sampled_from([5, 60, 600, 1700, 2000, 7200, 86_400, 20 * 86_400]))
        clock += timedelta(seconds=step)
        skew = timedelta(seconds=draw(st.sampled_from([0, 0, 0, -300, -5000])))
        visitor = draw(st.sampled_from(VISITORS))
        user = draw(st.sampled_from(CUSTOMERS))
        kind = draw(st.sampled_from(["page", "track", "track", "identify", "alias"]))
        if kind == "alias":
            events.append(
                make_event("alias", visitor=None, user_id=user or "alice", previous_id=visitor,
                           at=clock + skew)
            )  # fmt: skip
        elif kind == "identify":
            events.append(make_event("identify", visitor=visitor, user_id=user or "bob", at=clock))
        elif kind == "page":
            events.append(make_event("page", visitor=visitor, user_id=user, at=clock + skew))
        elif user and draw(st.integers(0, 4)) == 0:  # a server-side event: no device id
            events.append(make_event("track", "Order Completed", visitor=None, user_id=user,
                                     at=clock))  # fmt: skip
        else:
            name = draw(st.sampled_from(NAMES))
            events.append(make_event("track", name, visitor=visitor, user_id=user, at=clock + skew))
        originals.append(events[-1])
    return events
