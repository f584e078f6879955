"""`klantreis report`: a read-API figure as a table for people or as JSON for scripts, read from
the warehouse (the read API's query functions) or from a running read API (`--url`).

Both sources give the same figure: the rows of the figure's type as the API writes them, derived
rates included; from a running instance, the figure is the one list (or the fields) of the API's
response, without its envelope (site, dates, filters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Per report: the read API's path, its extra query parameters, and the response field that holds
# the figure's rows (None: the figure is the response's own fields).
REMOTE: dict[str, tuple[str, dict[str, str], str | None]] = {
    "funnel": ("/api/v1/funnel", {}, "phases"),
    "dropoff": ("/api/v1/dropoff", {}, "phases"),
    "metrics": ("/api/v1/metrics", {}, None),
    "touchpoints": ("/api/v1/touchpoints", {}, "touchpoints"),
    "trends": ("/api/v1/trends", {}, "days"),
    "channels": ("/api/v1/breakdown", {"by": "channel"}, "rows"),
    "devices": ("/api/v1/breakdown", {"by": "device"}, "rows"),
    "segments": ("/api/v1/breakdown", {"by": "segment"}, "rows"),
}
ENVELOPE = {"site", "date_from", "date_to", "filters", "grain", "by", "estimated", "exact"}


def figure_of(report: str, response: Mapping[str, Any]) -> Any:
    """The figure in a read-API response, as the warehouse path gives it."""
    field = REMOTE[report][2]
    if field is None:
        return {key: value for key, value in response.items() if key not in ENVELOPE}
    return response[field]


def _flat(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as columns of their own (`journeys_by_phase.purchase`)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def table(figure: Any) -> str:
    """A figure (a list of rows, or one row of named values) as aligned text: a column per
    field in the order the figure has them, numbers to the right."""
    if isinstance(figure, Mapping):
        rows = [{"figure": key, "value": value} for key, value in _flat(figure).items()]
    else:
        rows = [_flat(row) for row in figure]
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(name for row in rows for name in row))
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(name), int | float) or row.get(name) is None for row in rows)
        for name in columns
    ]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(columns), rule, *(line(values) for values in cells)])
