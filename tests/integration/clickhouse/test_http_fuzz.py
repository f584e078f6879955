"""Whatever arrives over HTTP, klantreis answers it without a 5xx: schemathesis generates requests
from the app's own OpenAPI schema, and hypothesis generates methods, routes, query strings,
headers and bodies (raw, JSON, gzipped) beyond it, against the running app."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err, Ok

from contracts.settings import load_settings
from klantreis.embedded import create_app
from klantreis.local_kafka import free_port

ROUTES = ["/v1/events", "/v1/track", "/v1/page", "/v1/identify", "/v1/alias", "/v1/batch",
          "/v1/group", "/v1/pixel.gif", "/i", "/com.snowplowanalytics.snowplow/tp2",
          "/api/v1/funnel", "/api/v1/customers/c-1/journey", "/t.js", "/readyz",
          "/nope"]  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12)
EVENTISH = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["page", "track", "identify", "alias", "x"]) | SCALARS,
        "event": SCALARS, "anonymous_id": SCALARS, "user_id": SCALARS, "previous_id": SCALARS,
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "soon"]) | SCALARS,
        "sent_at": SCALARS, "properties": st.dictionaries(st.text(max_size=5), SCALARS),
        "context": st.dictionaries(st.sampled_from(["page", "ip", "user_agent", "campaign"]),
                                   SCALARS | st.dictionaries(st.text(max_size=5), SCALARS)),
        "batch": st.lists(st.dictionaries(st.text(max_size=6), SCALARS), max_size=3),
        "data": st.lists(st.dictionaries(st.sampled_from(["e", "aid", "duid", "dtm"]), SCALARS)),
        "writeKey": st.sampled_from(["demo", "nope"]) | SCALARS,
    },
)  # fmt: skip
BODIES = (
    st.binary(max_size=200)
    | EVENTISH.map(orjson.dumps)
    | st.lists(EVENTISH, max_size=4).map(orjson.dumps)
)


@pytest.fixture(scope="module")
def base_url(chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app_settings = load_settings(
        kafka_bootstrap_servers="",
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"fuzz_{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("fuzz"),
        rate_limit_per_ip=0,
        rate_limit_per_site=0,
        flush_interval_seconds=0.05,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "OPTIONS", "PUT"]),
    route=st.sampled_from(ROUTES),
    query=st.dictionaries(
        st.sampled_from(["key", "site", "e", "aid", "duid", "user_id", "event", "p.x", "zz"]),
        st.sampled_from(["demo", "nope", "", "pv", "se", "%", "\u00e9"]) | st.text(max_size=10),
        max_size=5,
    ),
    body=BODIES,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-ndjson", "multipart/form-data", ""]
    ),
    encoding=st.sampled_from(["", "gzip", "br", "identity"]),
    gzipped=st.booleans(),
    auth=st.sampled_from([None, ("demo", ""), ("nope", "")]),
)
def test_no_request_gets_a_5xx(
    base_url: str,
    method: str,
    route: str,
    query: dict[str, str],
    body: bytes,
    content_type: str,
    encoding: str,
    gzipped: bool,
    auth: tuple[str, str] | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    content = gzip.compress(body) if gzipped else body
    response = httpx.request(
        method,
        base_url + route,
        params=query,
        content=content if method in ("POST", "PUT") else None,
        headers=headers,
        auth=auth,
        timeout=30,
    )
    assert response.status_code < 500, (response.status_code, response.text[:500])


def test_no_request_the_schema_allows_gets_a_5xx(base_url: str) -> None:
    """Schemathesis's strategies for every operation of the app's OpenAPI schema (driven by
    hypothesis directly: its pytest plugin does not run on pytest 9)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    results = list(schema.get_all_operations())
    assert not [r for r in results if isinstance(r, Err)], "the OpenAPI document is invalid"
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {op.path for op in operations} >= {"/v1/events", "/v1/pixel.gif", "/api/v1/funnel"}
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case: Any) -> None:
            response = case.call(headers={"Authorization": "Basic ZGVtbzo="})  # write key demo
            assert response.status_code < 500, (case.method, case.path, response.text[:300])

        no_server_error()
