"""The native event API as clients send it (docs/event-api.md is its prose twin).

Top-level fields are strict: a typo such as `anonymousId` gets a precise error instead of an
event that silently lacks an id. Unknown keys inside `context` are dropped, because tracking
libraries add their own there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.events import EventContext, EventType, UtcDatetime

# Placeholders that broken clients send instead of an id; treating them as ids would merge
# every such visitor into one journey.
RESERVED_IDS = frozenset({"anonymous", "null", "undefined", "none", "nil", "0", "-1", "guest"})

Identifier = Field(default=None, min_length=1, max_length=200)


class IncomingContext(EventContext):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ip: str | None = Field(
        default=None,
        max_length=64,
        description="Server-side senders may pass the visitor's IP; it never reaches storage.",
    )


class IncomingEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Client-generated UUID used to drop duplicates on retry.",
    )
    type: EventType
    event: str | None = Field(
        default=None, min_length=1, max_length=200, description="Track event name."
    )
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Page name.")
    anonymous_id: str | None = Identifier
    user_id: str | None = Identifier
    previous_id: str | None = Identifier
    timestamp: UtcDatetime | None = Field(
        default=None, description="When the event happened, on the client's clock."
    )
    sent_at: UtcDatetime | None = Field(
        default=None, description="When the client sent the request, on the same clock."
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: IncomingContext = IncomingContext()

    @field_validator("anonymous_id", "user_id", "previous_id")
    @classmethod
    def _not_a_placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("must not be blank")
            if value.strip().lower() in RESERVED_IDS:
                raise ValueError(f"{value!r} is a placeholder, not an id")
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> IncomingEvent:
        if self.anonymous_id is None and self.user_id is None:
            raise ValueError("an event needs anonymous_id or user_id (or both)")
        if self.type is EventType.TRACK and self.event is None:
            raise ValueError("a track event needs `event`, its name (e.g. 'Product Viewed')")
        if self.type is not EventType.TRACK and self.event is not None:
            raise ValueError(f"`event` is only for track events; a {self.type} event has none")
        if self.type is not EventType.PAGE and self.name is not None:
            raise ValueError("`name` is only for page events")
        if self.type is EventType.ALIAS and (self.previous_id is None or self.user_id is None):
            raise ValueError("an alias event needs previous_id and user_id")
        return self
