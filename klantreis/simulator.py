"""Realistic shop traffic for demos, tests and benchmarks (`klantreis simulate`).

Seeded, so a run is repeatable. Visitors follow personas of the domain: a cheap product bought
straight from an ad, an expensive one after weeks of reviews and comparisons, browsers who leave,
carts abandoned at checkout, repeat buyers and reviewers. Paths are not linear: people pause for
days, fall back to comparing after adding to cart, and come back through another channel.
Events are sent over HTTP to a collector, as a shop's visitors would send them.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from contracts.events import Event
from contracts.phases import PhaseModel
from services.ingest.intake import intake
from services.metrics.rows import Row, mapping_for
from services.metrics.warehouse import Warehouse
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules

SHOP = "https://shop.example"


@dataclass(frozen=True)
class Channel:
    name: str
    referrer: str | None
    utm: dict[str, str]


CHANNELS = (
    Channel("organic_search", "https://www.google.com/", {}),
    Channel(
        "paid_search",
        "https://www.google.com/",
        {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter_sale"},
    ),
    Channel(
        "paid_social",
        "https://www.instagram.com/",
        {"utm_source": "instagram", "utm_medium": "paid_social", "utm_campaign": "reels_q4"},
    ),
    Channel("organic_social", "https://www.facebook.com/", {}),
    Channel(
        "email",
        None,
        {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly"},
    ),
    Channel("referral", "https://www.kieskeurig.nl/vergelijk", {}),
    Channel("direct", None, {}),
)
# The device a visitor browses on, by the browser's user agent: shares close to a European web
# shop's (StatCounter, 2026: a little over half desktop).
DEVICES = (
    (
        "desktop",
        0.55,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "mobile",
        0.38,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        "tablet",
        0.07,
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
    ),
)
PAYMENT_FAILED = "Payment Failed"


@dataclass(frozen=True)
class Incident:
    """A checkout that fails on one device for some days: of the visitors on `device` who pay
    between `first` and `last` (UTC days, inclusive), `share` get "Payment Failed" instead of
    their order and leave."""

    device: str
    first: date
    last: date
    share: float = 2 / 3

    @classmethod
    def parse(cls, text: str) -> Incident:
        """`device:first:last`, e.g. `mobile:2026-11-12:2026-11-18` (`klantreis simulate`)."""
        try:
            device, first, last = text.split(":")
            incident = cls(device, date.fromisoformat(first), date.fromisoformat(last))
        except ValueError:
            raise ValueError(f"an incident is device:first-day:last-day, not {text!r}") from None
        if incident.last < incident.first:
            raise ValueError(f"the incident ends ({last}) before it begins ({first})")
        return incident

    def strikes(self, visitor: Visitor) -> bool:
        if visitor.device != self.device or not self.first <= visitor.clock.date() <= self.last:
            return False
        # Its own dice, so traffic with and without an incident is the same until it strikes.
        return random.Random(f"{visitor.anonymous_id}/{visitor.clock}").random() < self.share


def device_of(anonymous_id: str) -> tuple[str, str]:
    """A visitor's device and user agent, from their id alone: adding devices to the traffic
    leaves every other draw of a seeded run as it was."""
    draw = random.Random(anonymous_id).random()
    for name, share, agent in DEVICES:
        if draw < share:
            return name, agent
        draw -= share
    return DEVICES[0][0], DEVICES[0][2]


def ab_bucket_of(anonymous_id: str) -> str:
    """A visitor's A/B bucket, half and half, from their id alone (as device_of)."""
    return "test" if random.Random(f"ab/{anonymous_id}").random() < 0.5 else "control"


CHEAP = ("electric-toothbrush", "massage-cushion", "phone-case", "coffee-beans")
EXPENSIVE = ("espresso-machine", "e-bike", "oled-tv", "sofa")


@dataclass
class Visitor:
    """Builds one visitor's events in time order."""

    rng: random.Random
    now: datetime
    clock: datetime
    anonymous_id: str
    user_id: str | None = None
    channel: Channel = CHANNELS[-1]
    events: list[dict[str, Any]] = field(default_factory=list)
    first_in_session: bool = True
    incident: Incident | None = None
    ab_test: bool = False  # every event carries the visitor's `ab_bucket`

    @property
    def device(self) -> str:
        return device_of(self.anonymous_id)[0]

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def wait(self, seconds: float) -> bool:
        """Advance the visitor's clock; False once it passes now (the journey is still going)."""
        self.clock += timedelta(seconds=seconds * self.rng.uniform(0.6, 1.4))
        return self.clock < self.now

    def new_session(self, channel: Channel, after_days: float) -> bool:
        self.channel = channel
        self.first_in_session = True
        return self.wait(after_days * 86_400)

    def _emit(self, body: dict[str, Any], path: str) -> None:
        query = urlencode(self.channel.utm) if self.first_in_session and self.channel.utm else ""
        page: dict[str, Any] = {
            "url": f"{SHOP}{path}" + (f"?{query}" if query else ""),
            "path": path,
        }
        if self.first_in_session and self.channel.referrer:
            page["referrer"] = self.channel.referrer
        self.first_in_session = False
        body.update(
            event_id=self._id(),
            anonymous_id=self.anonymous_id,
            timestamp=self.clock.isoformat(),
            context={
                "page": page,
                "library": "klantreis-simulator",
                "user_agent": device_of(self.anonymous_id)[1],
            },
        )
        if self.user_id:
            body["user_id"] = self.user_id
        if self.ab_test:
            body.setdefault("properties", {})["ab_bucket"] = ab_bucket_of(self.anonymous_id)
        self.events.append(body)

    def page(self, path: str, seconds: float = 40) -> bool:
        self._emit({"type": "page", "name": path.strip("/") or "home"}, path)
        return self.wait(seconds)

    def track(self, name: str, path: str, seconds: float = 30, **properties: Any) -> bool:
        self._emit({"type": "track", "event": name, "properties": properties}, path)
        return self.wait(seconds)

    def identify(self, path: str) -> bool:
        self.user_id = self.user_id or f"cust-{self.rng.randrange(10**8):08d}"
        self._emit({"type": "identify", "traits": {"plan": "member"}}, path)
        return self.wait(5)

    def _pays(self, price: float) -> bool:
        """False when an incident makes the payment fail (the visitor then leaves)."""
        if self.incident is None or not self.incident.strikes(self):
            return True
        self.track(PAYMENT_FAILED, "/checkout", value=price, reason="card_declined")
        return False

    def buy(self, product: str, price: float) -> bool:
        props: dict[str, Any] = {"product_id": product, "price": price, "quantity": 1}
        return (
            self.track("Product Added", f"/p/{product}", **props)
            and self.track("Cart Viewed", "/cart")
            and self.track("Checkout Started", "/checkout", value=price)
            and self.identify("/checkout")
            and self._pays(price)
            and self.track(
                "Order Completed",
                "/checkout/thanks",
                order_id=self._id(),
                revenue=price,
                currency="EUR",
                products=[props],
            )
        )


def _impulse_buyer(v: Visitor) -> None:
    """Cheap product: one ad click, bought in the same session."""
    product = v.rng.choice(CHEAP)
    v.channel = v.rng.choice(CHANNELS[1:3])
    price = round(v.rng.uniform(9, 60), 2)
    _ = v.track("Product Viewed", f"/p/{product}", product_id=product, price=price) and v.buy(
        product, price
    )


def _researcher(v: Visitor) -> None:
    """Expensive product: weeks of reading, comparing and hesitating; buys about half the time."""
    product = v.rng.choice(EXPENSIVE)
    price = round(v.rng.uniform(400, 2500), 2)
    v.channel = v.rng.choice((CHANNELS[0], CHANNELS[3]))
    if not (v.page(f"/blog/choosing-{product}", 180) and v.page("/blog", 60)):
        return
    for visit in range(v.rng.randint(2, 5)):
        if not v.new_session(v.rng.choice(CHANNELS), after_days=v.rng.uniform(1, 6)):
            return
        steps: list[Callable[[], bool]] = [
            lambda: v.track("Products Searched", "/search", query=product),
            lambda: v.track("Product Viewed", f"/p/{product}", product_id=product, price=price),
            lambda: v.page(f"/p/{product}/reviews", 120),
            lambda: v.page("/faq", 60),
        ]
        if not all(step() for step in steps[: v.rng.randint(2, 4)]):
            return
        if visit >= 1 and v.rng.random() < 0.3:
            # Adds to cart, then falls back to comparing: a non-linear path.
            if not (
                v.track("Product Added", f"/p/{product}", product_id=product, price=price)
                and v.new_session(CHANNELS[5], after_days=v.rng.uniform(0.5, 3))
                and v.track("Product Viewed", f"/p/{product}", product_id=product, price=price)
            ):
                return
    if v.rng.random() < 0.5 and v.new_session(CHANNELS[4], after_days=v.rng.uniform(1, 4)):
        v.track("Product Viewed", f"/p/{product}", product_id=product, price=price)
        v.buy(product, price)


def _browser(v: Visitor) -> None:
    """Looks around and leaves: the bounce or early drop-out."""
    v.channel = v.rng.choice(CHANNELS)
    if v.page("/", 20) and v.rng.random() < 0.5:
        product = v.rng.choice(CHEAP + EXPENSIVE)
        v.track("Product Viewed", f"/p/{product}", product_id=product)


def _cart_abandoner(v: Visitor) -> None:
    product = v.rng.choice(CHEAP + EXPENSIVE)
    v.channel = v.rng.choice(CHANNELS)
    _ = (
        v.page("/", 15)
        and v.track("Product Viewed", f"/p/{product}", product_id=product)
        and v.track("Product Added", f"/p/{product}", product_id=product)
        and v.track("Checkout Started", "/checkout")
    )


def _loyal_customer(v: Visitor) -> None:
    """Buys, comes back through the newsletter to buy again, and often writes a review."""
    product = v.rng.choice(CHEAP)
    price = round(v.rng.uniform(9, 60), 2)
    v.channel = v.rng.choice(CHANNELS)
    if not (
        v.track("Product Viewed", f"/p/{product}", product_id=product) and v.buy(product, price)
    ):
        return
    for _ in range(v.rng.randint(1, 3)):
        if not (
            v.new_session(CHANNELS[4], after_days=v.rng.uniform(7, 30))
            and v.track("Product Viewed", f"/p/{product}", product_id=product)
            and v.buy(product, price)
        ):
            return
    if v.rng.random() < 0.6 and v.new_session(CHANNELS[4], after_days=v.rng.uniform(2, 10)):
        v.track("Product Reviewed", f"/p/{product}/review", product_id=product, rating=5)


PERSONAS: tuple[tuple[str, float, Callable[[Visitor], None]], ...] = (
    ("impulse_buyer", 0.2, _impulse_buyer),
    ("researcher", 0.25, _researcher),
    ("browser", 0.3, _browser),
    ("cart_abandoner", 0.15, _cart_abandoner),
    ("loyal_customer", 0.1, _loyal_customer),
)


def generate_journeys(
    seed: int,
    visitors: int,
    days: float,
    now: datetime | None = None,
    incident: Incident | None = None,
    ab_test: bool = False,
) -> list[list[dict[str, Any]]]:
    """Each visitor's events, in order, as native `/v1/events` JSON (without `sent_at`)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    weights = [weight for _, weight, _ in PERSONAS]
    journeys = []
    for _ in range(visitors):
        _, _, behave = rng.choices(PERSONAS, weights)[0]
        visitor = Visitor(
            rng=random.Random(rng.getrandbits(64)),
            now=now,
            clock=start + timedelta(seconds=rng.uniform(0, days * 86_400)),
            anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            incident=incident,
            ab_test=ab_test,
        )
        behave(visitor)
        if visitor.events:
            journeys.append(visitor.events)
    return journeys


@dataclass
class SendReport:
    events: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "retries": self.retries,
        }


async def send_journeys(
    base_url: str,
    write_key: str,
    journeys: Sequence[Sequence[dict[str, Any]]],
    batch_size: int = 500,
    attempts: int = 5,
) -> SendReport:
    """Send the traffic as a live shop's collector would receive it: every visitor's events
    merged into one stream in event-time order, as requests of at most `batch_size` events,
    one after another. The sessionizer's clock then moves forward through the history as it
    does for a live shop; requests in parallel would deliver one visit's events after a later
    visit's, behind a clock that has already ended its session. A 503 or a connection error is
    retried with the same body, as trackers do."""
    report = SendReport()
    stream = [
        event
        for _, _, _, event in sorted(
            (datetime.fromisoformat(event["timestamp"]), number, position, event)
            for number, journey in enumerate(journeys)
            for position, event in enumerate(journey)
        )
    ]
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for offset in range(0, len(stream), batch_size):
            batch = stream[offset : offset + batch_size]
            report.events += len(batch)
            await _post(client, write_key, batch, attempts, report)
    return report


async def _post(
    client: httpx.AsyncClient,
    write_key: str,
    batch: Sequence[dict[str, Any]],
    attempts: int,
    report: SendReport,
) -> None:
    sent_at = datetime.now(UTC).isoformat()
    body = [{**event, "sent_at": sent_at} for event in batch]
    for attempt in range(attempts):
        try:
            response = await client.post("/v1/events", json=body, auth=(write_key, ""))
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code < 500:
            response.raise_for_status()
            result = response.json()
            report.accepted += result["accepted"]
            report.rejected += len(result.get("rejected", []))
            return
        report.retries += 1
        await asyncio.sleep(0.2 * 2**attempt)
    raise RuntimeError(f"the collector did not accept a batch after {attempts} attempts")


def collected_events(
    seed: int,
    visitors: int,
    days: float,
    now: datetime,
    site_id: str = "shop",
    incident: Incident | None = None,
    ab_test: bool = False,
) -> list[Event]:
    """The events a collector makes of simulated traffic, in the order it receives them (by
    time): the input of sessionizer tests and benchmarks that skip the HTTP hop."""
    events: list[Event] = []
    for journey in generate_journeys(seed, visitors, days, now, incident, ab_test):
        sent = [{**event, "sent_at": now.isoformat()} for event in journey]
        events += intake(sent, site_id, now, 32 * 1024).events
    return sorted(events, key=lambda event: event.timestamp)


def store_simulated(warehouse: Warehouse, events: Sequence[Event], model: PhaseModel) -> None:
    """The events and what the sessionizer's core makes of them, inserted table by table as the
    pipeline would have written them: the input of warehouse tests and benchmarks that skip
    Kafka."""
    engine = JourneyEngine(JourneyRules(model))
    rows: dict[str, tuple[tuple[str, ...], list[Row]]] = {}
    for event in events:
        for record in (event, *engine.process(event)):
            mapping = mapping_for(record)
            rows.setdefault(mapping.table, (mapping.columns, []))[1].append(mapping.to_row(record))
    for table, (columns, table_rows) in rows.items():
        for start in range(0, len(table_rows), 100_000):
            warehouse.insert(table, columns, table_rows[start : start + 100_000])
