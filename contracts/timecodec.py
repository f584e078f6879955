"""Times as integers since the Unix epoch: the one codec of every klantreis record and table.

Integer ticks, not floats: `datetime.timestamp()` is a float, which loses microseconds after
2255 and rounds where a column truncates. The sessionizer's state keeps microseconds (a restored
journey must compute the same deadlines as one never restored); ClickHouse's DateTime64(3)
columns take milliseconds, truncated as the column would store the datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MILLISECOND = timedelta(milliseconds=1)


def to_micros(value: datetime) -> int:
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def to_millis(value: datetime) -> int:
    return (value - EPOCH) // _MILLISECOND


def maybe_micros(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _MICROSECOND


def maybe_from_micros(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def maybe_millis(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _MILLISECOND
