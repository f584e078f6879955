"""From a request body to enriched events and refusals: pure, so every rule is unit-testable.

The HTTP layer decides status codes; this module decides, per event, accepted or refused and why.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson

from contracts.channels import classify, visit_from
from contracts.events import (
    EARLIEST_EVENT_TIME,
    CampaignContext,
    DeadLetter,
    DeadLetterReason,
    Event,
    EventContext,
    correct_clock_skew,
)
from contracts.journeys import derived_id
from contracts.pseudonyms import PSEUDONYM_PREFIX, Pseudonyms, looks_like_email
from services.ingest import useragents
from services.ingest.schema import (
    DEFAULT_MAX_AMOUNT,
    CheckedEvent,
    EventProblem,
    IncomingEvent,
    checked,
)

# Events claiming to happen further ahead than this, after skew correction, are refused:
# they would sit in the future of every dashboard.
MAX_FUTURE = timedelta(days=1)


class RequestRefused(Exception):
    """The request as a whole is refused (unreadable, too large, not allowed); maps to one 4xx
    status, with a machine-readable code and a message a shop developer can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: DeadLetterReason
    message: str


@dataclass
class Intake:
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise RequestRefused(
            400, "empty_body", "the request body is empty; send a JSON event or array"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestRefused(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def decode_body(raw: bytes) -> list[Any]:
    """One event object, a JSON array of them, or newline-delimited JSON objects."""
    stripped = raw.strip()
    if stripped.startswith(b"{") and b"\n" in stripped and not _is_one_document(stripped):
        return _decode_lines(stripped)
    document = decode_json(raw)
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        if not document:
            raise RequestRefused(400, "empty_batch", "the batch is an empty array")
        return document
    raise RequestRefused(
        400, "not_an_event", f"expected a JSON object or array, got {type(document).__name__}"
    )


def _is_one_document(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _decode_lines(raw: bytes) -> list[Any]:
    lines = [line for line in raw.split(b"\n") if line.strip()]
    items = []
    for number, line in enumerate(lines, start=1):
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise RequestRefused(
                400, "malformed_json", f"line {number} is not valid JSON: {exc}"
            ) from None
    return items


def check_batch_size(events: int, max_events: int) -> None:
    """One request carries at most `max_events` events, whatever its protocol."""
    if events > max_events:
        raise RequestRefused(
            413,
            "too_many_events",
            f"the batch has {events} events; at most {max_events} per request",
        )


_DECODE_INCOMING = msgspec.json.Decoder(IncomingEvent)
_WHERE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


def describe(error: msgspec.ValidationError) -> str:
    """A validation error as one line a shop developer can act on: `field: problem`."""
    text = str(error)
    match = _WHERE.search(text)
    where = ""
    if match:
        text = text[: match.start()]
        where = match.group("path").lstrip(".")
        where = re.sub(r"\[(\d+)\]", r".\1", where)
    unknown = _UNKNOWN_FIELD.match(text)
    if unknown:
        field = unknown.group("field")
        where = f"{where}.{field}" if where else field
        text = "unknown field"
        if field.lower() != field:
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in field)
            text += f" (did you mean {snake}?)"
    return f"{where}: {text}" if where else text


MAX_DEPTH = 32  # levels of objects and arrays in one event, the event itself included


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply `value` nests objects and arrays, counted without recursion and no further
    than one past `limit` (a hostile body can nest a thousand levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if not isinstance(current, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = current.values() if isinstance(current, dict) else current
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(item: Any) -> str | None:
    """None when the event nests no deeper than allowed; else the field that does (`"name: "`),
    or "" for the event as a whole."""
    if nesting_depth(item) <= MAX_DEPTH:
        return None
    if isinstance(item, dict):
        for name, value in item.items():
            if nesting_depth(value, MAX_DEPTH - 1) > MAX_DEPTH - 1:
                return f"{name}: "
    return ""


class Untranslatable:
    """An item a protocol's translator could not make a native event of (a field of the wrong
    type): `intake` refuses it with `message`, keeping `original` as the dead letter."""

    __slots__ = ("message", "original")

    def __init__(self, message: str, original: Any) -> None:
        self.message = message
        self.original = original


def intake(
    items: Sequence[Any],
    site_id: str,
    received_at: datetime,
    max_event_bytes: int,
    pseudonyms: Pseudonyms | None = None,
    max_amount: float = DEFAULT_MAX_AMOUNT,
) -> Intake:
    """Each item accepted as an event or refused with a reason; with `pseudonyms`, customer ids
    and e-mail addresses are replaced by their pseudonyms in both."""
    result = Intake()
    for index, item in enumerate(items):
        problem = None
        if isinstance(item, Untranslatable):
            problem, item = item.message, item.original
        try:
            encoded: bytes | None = orjson.dumps(item)
        except orjson.JSONEncodeError as exc:  # nested past orjson's limit, or not JSON at all
            encoded, unencodable = None, exc
        # An event with no more brackets than the levels allowed cannot nest deeper: only the
        # rare rest is walked (counting is in C, the walk is not).
        if encoded is None or encoded.count(b"{") + encoded.count(b"[") > MAX_DEPTH:
            deep = _too_deep(item)
            if deep is not None:
                refusal = _Refused(
                    DeadLetterReason.SCHEMA_VIOLATION,
                    f"{deep}nests objects and arrays more than {MAX_DEPTH} levels deep",
                )
                _refuse(result, index, refusal, b"", site_id, received_at, pseudonyms)
                continue
        if encoded is None:
            message = f"not valid JSON: {unencodable}"
            refusal = _Refused(DeadLetterReason.SCHEMA_VIOLATION, message)
            _refuse(result, index, refusal, b"", site_id, received_at, pseudonyms)
            continue
        if problem is not None:
            refusal = _Refused(DeadLetterReason.SCHEMA_VIOLATION, problem)
            _refuse(result, index, refusal, encoded, site_id, received_at, pseudonyms)
            continue
        try:
            if len(encoded) > max_event_bytes:
                raise _Refused(
                    DeadLetterReason.SIZE_VIOLATION,
                    f"the event is {len(encoded)} bytes; at most {max_event_bytes}",
                )
            if not isinstance(item, dict):
                raise _Refused(
                    DeadLetterReason.SCHEMA_VIOLATION,
                    f"an event must be a JSON object, got {type(item).__name__}",
                )
            try:
                incoming = checked(_DECODE_INCOMING.decode(encoded), max_amount)
            except msgspec.ValidationError as exc:
                raise _Refused(DeadLetterReason.SCHEMA_VIOLATION, describe(exc)) from None
            except EventProblem as exc:
                raise _Refused(DeadLetterReason.SCHEMA_VIOLATION, str(exc)) from None
            result.events.append(enrich(item, incoming, site_id, received_at, pseudonyms))
        except _Refused as refused:
            _refuse(result, index, refused, encoded, site_id, received_at, pseudonyms)
    return result


def _refuse(
    result: Intake,
    index: int,
    refused: _Refused,
    encoded: bytes,
    site_id: str,
    received_at: datetime,
    pseudonyms: Pseudonyms | None,
) -> None:
    result.rejections.append(Rejection(index, refused.reason, refused.message))
    payload = without_addresses(encoded)
    if pseudonyms is not None:
        payload = _pseudonymous_payload(payload, site_id, pseudonyms)
    result.dead_letters.append(
        DeadLetter.of(payload, refused.reason, refused.message, "ingest", site_id, received_at)
    )


# Candidates for IP addresses in text: dotted quads, and runs of hex digits and colons with at
# least two colons (IPv6, IPv4-mapped included); `ipaddress` decides which are addresses.
_ADDRESS_CANDIDATE = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?::\d{1,3}(?:\.\d{1,3}){3})?)(?![\w.:])"
)
REDACTED_ADDRESS = "[ip]"
_EMAIL_IN_TEXT = re.compile(r"[^\s\"'@,;:<>()\[\]\\]+@[^\s\"'@,;:<>()\[\]\\]+\.[A-Za-z]{2,63}")


def _pseudonymous_payload(payload: bytes, site_id: str, pseudonyms: Pseudonyms) -> bytes:
    """A refused event as it may be kept when ids are pseudonymous: its `user_id` (when it can
    be read) and every e-mail address in it replaced by their pseudonyms."""
    text = _EMAIL_IN_TEXT.sub(lambda m: pseudonyms.of(site_id, m.group(0)), payload.decode())
    try:
        item = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.encode()
    user_id = item.get("user_id") if isinstance(item, dict) else None
    if isinstance(user_id, str) and not user_id.startswith(PSEUDONYM_PREFIX):
        item["user_id"] = pseudonyms.of(site_id, user_id)
    return orjson.dumps(item)


def without_addresses(payload: bytes) -> bytes:
    """A refused event as it may be kept: every IP address in it replaced by `[ip]`.

    Accepted events never hold one (the stored event has no field for it); a refused event is
    kept as it was sent, and a sender may have put the visitor's address anywhere in it
    (`context.ip`, most often)."""
    text = payload.decode(errors="replace")

    def redact(match: re.Match[str]) -> str:
        try:
            ipaddress.ip_address(match.group(0))
        except ValueError:
            return match.group(0)
        return REDACTED_ADDRESS

    return _ADDRESS_CANDIDATE.sub(redact, text).encode()


class _Refused(Exception):
    def __init__(self, reason: DeadLetterReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def enrich(
    item: dict[str, Any],
    checked: CheckedEvent,
    site_id: str,
    received_at: datetime,
    pseudonyms: Pseudonyms | None = None,
) -> Event:
    """The event as klantreis keeps it; `item` is the same event as the client sent it."""
    incoming = checked.event
    anonymous_id, user_id = incoming.anonymous_id, incoming.user_id
    previous_id, traits = incoming.previous_id, incoming.traits
    if pseudonyms is not None:
        # The user id always; an anonymous or previous id only when it is an address (an
        # anonymous id is random, and an alias links it to the customer as it was sent).
        user_id = pseudonyms.of(site_id, user_id) if user_id else None
        if looks_like_email(anonymous_id):
            anonymous_id = pseudonyms.of(site_id, str(anonymous_id))
        if looks_like_email(previous_id):
            previous_id = pseudonyms.of(site_id, str(previous_id))
        traits = pseudonyms.traits(site_id, traits)
    try:
        timestamp = correct_clock_skew(checked.timestamp, checked.sent_at, received_at)
    except OverflowError:
        raise _Refused(
            DeadLetterReason.SCHEMA_VIOLATION,
            "timestamp: corrected by the sent_at offset it falls outside the range of dates",
        ) from None
    if timestamp < EARLIEST_EVENT_TIME:
        raise _Refused(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"timestamp: {timestamp.isoformat()} is before 1970-01-01",
        )
    if timestamp - received_at > MAX_FUTURE:
        raise _Refused(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"timestamp: {timestamp.isoformat()} is more than a day after the server's clock",
        )
    context = incoming.context
    campaign, channel = _campaign_and_channel(
        context.campaign, context.page.url, context.page.referrer
    )
    agent = useragents.classify(context.user_agent)
    return Event(
        event_id=incoming.event_id or _derived_event_id(item, incoming, site_id),
        site_id=site_id,
        type=incoming.type,
        event=incoming.event or incoming.name,
        anonymous_id=anonymous_id,
        user_id=user_id,
        previous_id=previous_id,
        group_id=incoming.group_id,
        timestamp=timestamp,
        original_timestamp=checked.timestamp,
        sent_at=checked.sent_at,
        received_at=received_at,
        channel=channel,
        device=agent.device,
        browser=agent.browser,
        is_bot=agent.is_bot,
        properties=incoming.properties,
        traits=traits,
        context=EventContext(
            page=context.page,
            campaign=campaign,
            user_agent=context.user_agent,
            locale=context.locale,
            library=context.library,
        ),
    )


def _derived_event_id(item: dict[str, Any], incoming: IncomingEvent, site_id: str) -> str:
    """An id for a client that sent none.

    With a client timestamp the content identifies the event, so a retried request (which may
    carry a new `sent_at`) gets the same id and is de-duplicated; without one, two identical page
    views seconds apart are different events, and only a random id keeps them apart. The content
    is the event as sent (keys sorted, `sent_at` left out): serialising the validated model
    instead cost four times as much.
    """
    if incoming.timestamp is None:
        return str(uuid.uuid4())
    content = {key: value for key, value in item.items() if key != "sent_at"}
    return derived_id("event", site_id, orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode())


@lru_cache(maxsize=4096)
def _campaign_and_channel(
    sent: CampaignContext, url: str | None, referrer: str | None
) -> tuple[CampaignContext, str]:
    """The campaign and channel of a page view, kept per page URL and referrer: the events of
    one page share them, and parsing both URLs is a third of enriching an event."""
    campaign = _campaign(sent, url)
    visit = visit_from(url, referrer, campaign.source, campaign.medium, campaign.name)
    return campaign, classify(visit).value


def _campaign(campaign: CampaignContext, url: str | None) -> CampaignContext:
    """UTM parameters from the page URL when the client did not send them parsed."""
    sent = (campaign.source, campaign.medium, campaign.name, campaign.term, campaign.content)
    if any(value is not None for value in sent) or not url or "utm_" not in url:
        return campaign
    query = parse_qs(urlsplit(url).query)

    def first(name: str) -> str | None:
        values = query.get(f"utm_{name}")
        return values[0][:256] if values else None

    return CampaignContext(
        source=first("source"),
        medium=first("medium"),
        name=first("campaign"),
        term=first("term"),
        content=first("content"),
    )
