"""The three services as separate processes on the real broker, as `make run-kafka` and
docker-compose run them: the collector, the sessionizer and the metrics worker with its API."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from contracts.settings import Settings
from klantreis.local_kafka import free_port
from tests.support.pipeline import ADMIN, SITE, WRITE_KEY
from tests.support.processes import services_env, start, wait_for_http


def test_separate_services_carry_events_from_http_to_the_funnel(
    settings: Settings, tmp_path: Path
) -> None:
    ingest_port, api_port, ingest_ops, api_ops = (free_port() for _ in range(4))
    env = services_env(
        settings, tmp_path / "var",
        ingest_port=ingest_port, api_port=api_port, ingest_ops=ingest_ops, api_ops=api_ops,
    )  # fmt: skip
    services = [
        start("metrics", ["metrics"], env, tmp_path),
        start("sessionizer", ["sessionizer"], env, tmp_path),
        start("ingest", ["ingest"], env, tmp_path),
    ]
    metrics, _, ingest = services
    try:
        wait_for_http(f"http://127.0.0.1:{ingest_port}/readyz", ingest)
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz", metrics)
        events = [
            {"type": "page", "anonymous_id": "a"},
            {"type": "track", "event": "Product Added", "anonymous_id": "a"},
            {"type": "page", "anonymous_id": "b"},
            {"type": "page", "anonymous_id": "c"},
            {"type": "track", "event": "Products Searched", "anonymous_id": "c"},
        ]
        response = httpx.post(
            f"http://127.0.0.1:{ingest_port}/v1/events", json=events, auth=(WRITE_KEY, "")
        )
        assert response.json() == {"accepted": 5}

        expected = {"awareness": 3, "consideration": 2, "purchase": 1}
        deadline = time.monotonic() + 60
        while True:
            body = httpx.get(
                f"http://127.0.0.1:{api_port}/api/v1/funnel", params={"site": SITE}, headers=ADMIN
            ).json()
            reach = {p["phase"]: p["journeys"] for p in body["phases"]}
            if {k: reach[k] for k in expected} == expected:
                break
            assert time.monotonic() < deadline, (reach, metrics.output())
            time.sleep(0.25)
        exposed = httpx.get(f"http://127.0.0.1:{api_ops}/metrics").text
        assert 'klantreis_warehouse_rows_written_total{table="events"} 5.0' in exposed
        collected = httpx.get(f"http://127.0.0.1:{ingest_ops}/metrics").text
        assert f'klantreis_ingest_events_accepted_total{{site="{SITE}"}} 5.0' in collected
        # The series name sites and their traffic: not on the ports the public reaches, where
        # the collector's API schema is not served either.
        for public in (f"{ingest_port}/metrics", f"{api_port}/metrics", f"{ingest_port}/docs"):
            assert httpx.get(f"http://127.0.0.1:{public}").status_code == 404, public
        for operators in (ingest_ops, api_ops):
            assert httpx.get(f"http://127.0.0.1:{operators}/healthz").status_code == 200
            refused = httpx.post(f"http://127.0.0.1:{operators}/v1/events", json=[])
            assert refused.status_code == 404
        check_access(f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{api_port}")
    finally:
        codes = {service.name: service.stop() for service in reversed(services)}
    assert codes == {"ingest": True, "sessionizer": True, "metrics": True}, {
        s.name: s.output()[-2000:] for s in services
    }


PICKUP_SECONDS = 30  # the longest a collector may take to follow a change of the sites


def until_status(send: Callable[[], httpx.Response], status: int) -> None:
    deadline = time.monotonic() + PICKUP_SECONDS
    while (response := send()).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.25)


def check_access(collector: str, api: str) -> None:
    """Sites and tokens made on the read API's admin routes reach the collector (a separate
    process) through the sites topic, and every read is checked against them."""
    admin = f"{api}/api/v1/admin/sites"
    made = httpx.post(admin, json={"site_id": "second"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    (second_key,) = made.json()["write_keys"]
    page = {"type": "page", "anonymous_id": "z"}
    until_status(
        lambda: httpx.post(f"{collector}/v1/events", json=page, auth=(second_key, "")), 200
    )

    shop_token = httpx.post(f"{admin}/{SITE}/tokens", json={"name": "a"}, headers=ADMIN).json()
    second_token = httpx.post(f"{admin}/second/tokens", headers=ADMIN).json()
    funnel = f"{api}/api/v1/funnel"

    def read(headers: dict[str, str] | None) -> httpx.Response:
        return httpx.get(funnel, params={"site": SITE}, headers=headers)

    assert read(None).status_code == 401
    assert read({"Authorization": f"Bearer {second_token['token']}"}).status_code == 403
    assert read({"Authorization": f"Bearer {WRITE_KEY}"}).status_code == 403
    assert read({"Authorization": f"Bearer {shop_token['token']}"}).status_code == 200
    assert read(ADMIN).status_code == 200
    refused = httpx.get(admin, headers={"Authorization": f"Bearer {shop_token['token']}"})
    assert refused.status_code == 403

    rotated = httpx.post(f"{admin}/second/write-key", headers=ADMIN).json()["write_keys"][0]
    until_status(
        lambda: httpx.post(f"{collector}/v1/events", json=page, auth=(second_key, "")), 401
    )
    sent = httpx.post(f"{collector}/v1/events", json=page, auth=(rotated, ""))
    assert sent.status_code == 200, sent.text
