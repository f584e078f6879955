"""Inputs that once answered 500, each now a 400 whose message names the field: nesting a
thousand levels deep, and fields of the wrong type in every protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.embedded import AUTH, embedded


def deep(body: object, levels: int) -> str:
    """`body` as JSON, its "DEEP" value replaced by arrays nested `levels` deep (too deep for
    `json.dumps` itself)."""
    return json.dumps(body).replace('"DEEP"', "[" * levels + "]" * levels)


SNOWPLOW = "/com.snowplowanalytics.snowplow/tp2"
PAGE = {"type": "page", "anonymous_id": "a", "properties": {"x": "DEEP"}}
TRACK = {"type": "track", "event": "E", "anonymousId": "a"}
UE_PR = {"data": {"schema": "iglu:a/b/jsonschema/1-0-0", "data": {"x": "DEEP"}}}
PV = {"e": "pv", "aid": "demo", "duid": "a"}


def snowplow(**fields: object) -> str:
    return json.dumps({"data": [{**PV, **fields}]})


CASES: dict[str, tuple[str, str, str]] = {
    "native, 1,000 levels": ("/v1/events", deep(PAGE, 1000), "properties"),
    "native, 1,020 levels": ("/v1/events", deep(PAGE, 1020), "properties"),
    "segment batch, 1,000 levels": (
        "/v1/batch",
        deep({"batch": [{**TRACK, "properties": {"x": "DEEP"}}]}, 1000),
        "properties",
    ),
    "snowplow ue_pr, 1,000 levels": (
        SNOWPLOW,
        snowplow(e="ue", ue_pr=deep(UE_PR, 1000)),
        "properties",
    ),
    "segment context a list": (
        "/v1/batch",
        json.dumps({"batch": [{**TRACK, "context": [1]}]}),
        "context",
    ),
    "segment context a string": (
        "/v1/batch",
        json.dumps({"batch": [{**TRACK, "context": "x"}]}),
        "context",
    ),
    "snowplow aid a list": (SNOWPLOW, snowplow(aid=["demo"]), "aid"),
    "snowplow aid an object": (SNOWPLOW, snowplow(aid={"k": 1}), "aid"),
    "snowplow ue_px a number": (SNOWPLOW, snowplow(e="ue", ue_px=5), "ue_px"),
    "snowplow dtm a list": (SNOWPLOW, snowplow(dtm=[1]), "dtm"),
    "snowplow stm an object": (SNOWPLOW, snowplow(dtm="1700000000000", stm={"a": 1}), "stm"),
    "snowplow ua a number": (SNOWPLOW, snowplow(ua=5), "ua"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_input_gets_a_400_naming_the_field(
    case: str, chdb_dsn: str, tmp_path: Path
) -> None:
    path, body, field = CASES[case]
    async with embedded(chdb_dsn, tmp_path) as http:
        response = await http.post(
            path, content=body, auth=AUTH, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith((f"{field}:", f"data.0.{field}:")), (
        response.json()["message"]
    )
