"""The collector's HTTP behaviour, in-process against the embedded pipeline (real chDB)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.embedded import AUTH, PAGE, embedded


@pytest.fixture
async def client(chdb_dsn: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with embedded(chdb_dsn, tmp_path) as http:
        yield http


async def test_a_gzipped_batch_is_accepted(client: httpx.AsyncClient) -> None:
    body = gzip.compress(orjson.dumps([PAGE, {**PAGE, "name": "Cart"}]))
    response = await client.post(
        "/v1/events", content=body, auth=AUTH, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}


async def test_a_gzip_bomb_is_refused_before_it_inflates(client: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")  # 50 MiB in ~50 KiB
    assert len(bomb) < 100 * 1024
    response = await client.post(
        "/v1/events", content=bomb, auth=AUTH, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "decompresses to more than" in response.json()["message"]


async def test_a_corrupt_gzip_body_is_a_precise_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events", content=b"not gzip at all", auth=AUTH, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_gzip"


async def test_an_unknown_encoding_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events", content=b"{}", auth=AUTH, headers={"Content-Encoding": "br"}
    )
    assert response.status_code == 415


async def test_newline_delimited_events_are_accepted(client: httpx.AsyncClient) -> None:
    lines = b"\n".join(orjson.dumps({**PAGE, "name": f"p{i}"}) for i in range(3)) + b"\n"
    response = await client.post(
        "/v1/events",
        content=lines,
        auth=AUTH,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.json() == {"accepted": 3}
    bad = await client.post("/v1/events", content=lines + b"{oops\n", auth=AUTH)
    assert bad.status_code == 400 and "line 4" in bad.json()["message"]


async def test_a_pretty_printed_event_is_one_event(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events", content=orjson.dumps(PAGE, option=orjson.OPT_INDENT_2), auth=AUTH
    )
    assert response.json() == {"accepted": 1}


async def test_segment_calls_answer_like_segment(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/track",
        json={"writeKey": "demo", "anonymousId": "a", "event": "Product Viewed"},
    )
    assert response.json() == {"success": True, "accepted": 1}
    short = await client.post("/v1/t", json={"anonymousId": "a", "event": "Viewed"}, auth=AUTH)
    assert short.json() == {"success": True, "accepted": 1}  # analytics.js's short path
    group = await client.post("/v1/g", json={"userId": "u", "groupId": "acme"}, auth=AUTH)
    assert group.json() == {"success": True, "accepted": 1}
    unknown = await client.post("/v1/frobnicate", json={"userId": "u"}, auth=AUTH)
    assert unknown.status_code == 404


async def test_analytics_js_loads_settings_that_send_to_this_collector(
    client: httpx.AsyncClient,
) -> None:
    settings = await client.get("/v1/projects/demo/settings")
    destination = settings.json()["integrations"]["Segment.io"]
    assert (destination["apiKey"], destination["apiHost"]) == ("demo", "c/v1")
    assert (await client.get("/v1/projects/nope/settings")).status_code == 404


async def accepted(client: httpx.AsyncClient) -> float:
    exposed = (await client.get("/metrics")).text
    line = [
        x for x in exposed.splitlines() if x.startswith("klantreis_ingest_events_accepted_total")
    ]
    return float(line[0].split()[-1]) if line else 0.0


async def test_the_pixel_answers_a_gif_and_records_the_event(client: httpx.AsyncClient) -> None:
    before = await accepted(client)
    response = await client.get(
        "/v1/pixel.gif", params={"key": "demo", "event": "Email Opened", "user_id": "c-1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    assert await accepted(client) == before + 1


async def test_a_refused_pixel_still_answers_a_gif_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    no_id = await client.get("/v1/pixel.gif", params={"key": "demo", "event": "Email Opened"})
    assert no_id.status_code == 400 and no_id.content.startswith(b"GIF89a")
    assert "anonymous_id or user_id" in no_id.headers["x-klantreis-error"]
    wrong_key = await client.get("/v1/pixel.gif", params={"key": "nope", "user_id": "c"})
    assert wrong_key.status_code == 401 and wrong_key.content.startswith(b"GIF89a")


async def test_a_snowplow_get_uses_the_app_id_as_write_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/i", params={"e": "pv", "aid": "demo", "duid": "d-1"})
    assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    refused = await client.get("/i", params={"e": "pv", "aid": "other", "duid": "d-1"})
    assert refused.status_code == 401


@pytest.fixture
async def strict(chdb_dsn: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # a burst of 1, then one request every 2 s
    async with embedded(chdb_dsn, tmp_path, rate_limit_per_ip=0.5) as http:
        yield http


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    strict: httpx.AsyncClient,
) -> None:
    first = await strict.post("/v1/events", json=PAGE, auth=AUTH)
    second = await strict.post("/v1/events", json=PAGE, auth=AUTH)
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "2"
    assert second.json()["error"] == "rate_limited"
    pixel = await strict.get("/v1/pixel.gif", params={"key": "demo", "user_id": "u"})
    assert pixel.status_code == 429 and pixel.content.startswith(b"GIF89a")


async def test_bots_and_headless_browsers_are_kept_and_counted(client: httpx.AsyncClient) -> None:
    headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/131.0 Safari"
    response = await client.post(
        "/v1/events", json={**PAGE, "context": {"user_agent": headless}}, auth=AUTH
    )
    assert response.json() == {"accepted": 1}
    exposed = (await client.get("/metrics")).text
    assert 'klantreis_ingest_bots_flagged_total{site="demo"} 1.0' in exposed


async def test_cors_reflects_allowed_origins_and_answers_preflights(
    client: httpx.AsyncClient,
) -> None:
    origin = {"Origin": "https://shop.example"}
    response = await client.post("/v1/events?key=demo", json=PAGE, headers=origin)
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    # Snowplow's tracker sends credentials: the answer must say they are allowed.
    assert response.headers["access-control-allow-credentials"] == "true"
    asked = "content-type, authorization, x-retry-count, x-anonymous-id"
    preflight = await client.options(
        "/v1/t",
        headers={**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": asked},
    )  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == asked
    assert preflight.headers["access-control-allow-credentials"] == "true"
    odd = await client.options(
        "/v1/t",
        headers={**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-ok, bad header"},
    )  # fmt: skip
    assert "access-control-allow-headers" not in odd.headers


async def test_every_collector_answer_carries_cors_errors_included(
    client: httpx.AsyncClient,
) -> None:
    origin = {"Origin": "https://shop.example"}
    answers = [
        await client.post("/v1/events?key=nope", json=PAGE, headers=origin),  # 401
        await client.post("/v1/events?key=demo", content=b"{", headers=origin),  # 400
        await client.post("/v1/no-such-call", json={}, headers=origin),  # 404
        await client.get("/v1/events", headers=origin),  # 405
    ]
    assert [a.status_code for a in answers] == [401, 400, 404, 405]
    for answer in answers:
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    # The read API is no collector route: no CORS there.
    read = await client.get("/api/v1/funnel", params={"site": "demo"}, headers=origin)
    assert "access-control-allow-origin" not in read.headers


async def test_pages_on_hosts_a_site_does_not_allow_are_refused(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded(chdb_dsn, tmp_path, site_hosts={"demo": ["*.shop.example"]}) as http:
        ok = await http.post(
            "/v1/events?key=demo", json=PAGE, headers={"Origin": "https://www.shop.example"}
        )
        evil = await http.post(
            "/v1/events?key=demo", json=PAGE, headers={"Origin": "https://evil.example"}
        )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://www.shop.example"
    assert evil.status_code == 403 and evil.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in evil.headers


async def test_a_pixel_over_its_sites_rate_says_when_to_retry(
    chdb_dsn: str, tmp_path: Path
) -> None:
    limits = {"rate_limit_per_ip": 0, "rate_limit_per_site": 0.5, "max_batch_events": 1}
    async with embedded(chdb_dsn, tmp_path, **limits) as http:
        params = {"key": "demo", "user_id": "u", "event": "Email Opened"}
        first = await http.get("/v1/pixel.gif", params=params)
        second = await http.get("/v1/pixel.gif", params=params)
    assert first.status_code == 200
    assert second.status_code == 429 and second.content.startswith(b"GIF89a")
    assert second.headers["retry-after"] == "2"
    assert "this site" in second.headers["x-klantreis-error"]


async def test_a_spoofed_forwarded_for_does_not_escape_the_rate_limit(
    chdb_dsn: str, tmp_path: Path
) -> None:
    """Behind one proxy, the client's own X-Forwarded-For entries are ignored: only the one the
    proxy appended counts, so random leftmost entries are still one client."""
    async with embedded(chdb_dsn, tmp_path, rate_limit_per_ip=0.5, forwarded_for_hops=1) as http:
        statuses = [
            (await http.post(
                "/v1/events", json=PAGE, auth=AUTH,
                headers={"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.9"},
            )).status_code
            for n in range(20)
        ]  # fmt: skip
        other = await http.post(
            "/v1/events", json=PAGE, auth=AUTH, headers={"X-Forwarded-For": "203.0.113.10"}
        )
    assert statuses.count(429) >= 10  # a burst of one, then refused (spoofed: none)
    assert other.status_code == 200  # another client has its own allowance
