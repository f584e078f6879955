"""`klantreis up`, as `make run` starts it: the whole pipeline in one process, no broker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime, timedelta
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from contracts.phases import DEFAULT_PHASE_MODEL
from klantreis.local_kafka import free_port
from tests.support.processes import KLANTREIS, Service, start, wait_for_http

JOURNEY = [
    {"type": "page", "anonymous_id": "visitor-1", "name": "Home"},
    {"type": "track", "event": "Product Viewed", "anonymous_id": "visitor-1"},
    {"type": "track", "event": "Order Completed", "anonymous_id": "visitor-1"},
]


def up(tmp_path: Path, port: int, **env: str) -> Service:
    service = start(
        "up",
        ["up"],
        {"PORT": str(port), "KLANTREIS_DATA_DIR": str(tmp_path / "var"), **env},
        tmp_path,
    )
    wait_for_http(f"http://127.0.0.1:{port}/readyz", service)
    return service


def demo_link(service: Service) -> str:
    """The link `klantreis up` prints for the demo site's figures."""
    found = re.search(r"demo figures:\s+(\S+)", service.output())
    assert found, service.output()
    return found.group(1)


def read(base: str, service: Service, path: str) -> Any:
    """A figure of the demo site, read with the token of the printed link."""
    token = parse_qs(urlsplit(demo_link(service)).query)["token"][0]
    return httpx.get(f"{base}{path}", params={"site": "demo", "token": token}).json()


def funnel(base: str, service: Service) -> dict[str, int]:
    body = read(base, service, "/api/v1/funnel")
    return {phase["phase"]: phase["journeys"] for phase in body["phases"]}


def test_the_printed_link_opens_the_demo_figures_and_nothing_opens_without_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    service = up(tmp_path, port)
    try:
        link = demo_link(service)
        assert link.startswith(f"http://127.0.0.1:{port}/")
        figures = httpx.get(link)
        assert figures.status_code == 200 and figures.json()["site"] == "demo", figures.text
        bare = httpx.get(link.split("&token=")[0])
        assert bare.status_code == 401
    finally:
        assert service.stop(), service.output()
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert token not in (tmp_path / "var" / "sites.json").read_text()  # kept as a digest


def test_a_journey_posted_to_the_demo_site_shows_in_the_funnel_within_5_seconds(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = up(tmp_path, port)
    try:
        for event in JOURNEY:  # one request per event, as a browser sends them
            response = httpx.post(f"{base}/v1/events", json=event, auth=("demo", ""))
            assert response.status_code == 200, response.text
        posted = time.monotonic()
        expected = {"awareness": 1, "consideration": 1, "purchase": 1}
        while {k: v for k, v in funnel(base, service).items() if k in expected} != expected:
            assert time.monotonic() - posted < 5, funnel(base, service)
            time.sleep(0.1)
    finally:
        assert service.stop(), service.output()

    # A clean stop loses nothing: after a restart the journey is still counted, and the next
    # event continues the same journey instead of starting a new one.
    service = up(tmp_path, port)
    try:
        assert funnel(base, service)["purchase"] == 1
        again = {"type": "track", "event": "Order Completed", "anonymous_id": "visitor-1"}
        assert httpx.post(f"{base}/v1/events", json=again, auth=("demo", "")).status_code == 200
        posted = time.monotonic()
        # the second order of the same customer, once the reorder hold lets it go
        while funnel(base, service)["retention"] != 1:
            assert time.monotonic() - posted < 5, funnel(base, service)
            time.sleep(0.1)
        assert funnel(base, service)["awareness"] == 1
        # The command line asks the running instance for the same figure.
        token = parse_qs(urlsplit(demo_link(service)).query)["token"][0]
        remote = report("funnel", "--url", base, "--token", token, "--json")
        assert remote == read(base, service, "/api/v1/funnel")["phases"]
        refused = subprocess.run(
            [KLANTREIS, "report", "funnel", "--site", "demo", "--url", base, "--token", "nope"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
    finally:
        assert service.stop(), service.output()

    # With the service stopped, the command line reads the same figures from the same data.
    local = report("funnel", "--json", data=tmp_path / "var")
    assert local == remote
    by_phase = {row["phase"]: row["journeys"] for row in local}
    assert (by_phase["purchase"], by_phase["retention"]) == (1, 1)
    # And as a table for people: a line per phase, its journeys in the journeys column.
    header, rule, *lines = report("funnel", data=tmp_path / "var").splitlines()
    columns = header.split()
    assert columns[:2] == ["phase", "journeys"] and set(rule) <= {"-", " "}
    assert {line.split()[0]: int(line.split()[1]) for line in lines} == by_phase


def report(*args: str, data: Path | None = None) -> Any:
    """`klantreis report … --site demo`: its table, or with `--json` the figure it printed."""
    env = {**os.environ, **({"KLANTREIS_DATA_DIR": str(data)} if data else {})}
    done = subprocess.run(
        [KLANTREIS, "report", args[0], "--site", "demo", *args[1:]],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def test_bad_input_gets_a_precise_4xx_and_never_a_5xx(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = up(tmp_path, port)
    try:
        cases = {
            "malformed JSON": (
                httpx.post(f"{base}/v1/events", content=b"{not json", auth=("demo", "")),
                400,
                "not valid JSON",
            ),
            "wrong write key": (
                httpx.post(f"{base}/v1/events", json=JOURNEY[0], auth=("wrong", "")),
                401,
                "write key",
            ),
            "no write key": (
                httpx.post(f"{base}/v1/events", json=JOURNEY[0]),
                401,
                "write key",
            ),
            "oversized body": (
                httpx.post(
                    f"{base}/v1/events",
                    content=b"[" + b" " * (600 * 1024) + b"]",
                    auth=("demo", ""),
                ),
                413,
                "at most",
            ),
            "no anonymous_id nor user_id": (
                httpx.post(f"{base}/v1/events", json={"type": "page"}, auth=("demo", "")),
                400,
                "anonymous_id or user_id",
            ),
        }
        for case, (response, status, words) in cases.items():
            assert response.status_code == status, (case, response.text)
            assert words in response.json()["message"], (case, response.text)
    finally:
        assert service.stop(), service.output()


def names_of(phase: str) -> frozenset[str]:
    """The event names the default model maps to `phase` (the docs table, as data)."""
    return frozenset().union(
        *(rule.when.events for rule in DEFAULT_PHASE_MODEL.rules if rule.phase == phase)
    )


CONSIDERATION, PURCHASE, ADVOCACY = map(names_of, ("consideration", "purchase", "advocacy"))


def expected_reach(journeys: list[list[dict[str, object]]]) -> dict[str, int]:
    """The funnel as docs/data-model.md defines it, computed from the event names alone."""
    reach = dict.fromkeys(("awareness", "consideration", "purchase", "retention", "advocacy"), 0)
    for journey in journeys:
        names = [str(event.get("event")) for event in journey]
        advocate = any(name in ADVOCACY for name in names)
        retained = names.count("Order Completed") >= 2 or advocate
        bought = any(name in PURCHASE for name in names) or retained
        considered = any(name in CONSIDERATION for name in names) or bought
        reach["awareness"] += 1
        reach["consideration"] += considered
        reach["purchase"] += bought
        reach["retention"] += retained
        reach["advocacy"] += advocate
    return reach


def visits(journey: list[dict[str, Any]]) -> int:
    """Runs of a visitor's events without a gap over the session timeout (30 minutes)."""
    times = [datetime.fromisoformat(event["timestamp"]) for event in journey]
    return 1 + sum(later - earlier > timedelta(minutes=30) for earlier, later in pairwise(times))


def test_simulated_traffic_gives_the_funnel_its_journeys_define(tmp_path: Path) -> None:
    from klantreis.simulator import generate_journeys
    from tests.support.processes import KLANTREIS

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = up(tmp_path, port)
    try:
        sent = subprocess.run(
            [KLANTREIS, "simulate", "--url", base, "--visitors", "150", "--seed", "11"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        report = json.loads(sent.stdout)
        journeys = generate_journeys(11, 150, 30)
        assert report["accepted"] == report["events"] == sum(len(j) for j in journeys)
        assert report["rejected"] == 0
        assert funnel(base, service) == expected_reach(journeys)
        # A session per visit, not per event: history sent in time order lands in a clock
        # that follows it, so no visit's session ends before its next event comes.
        metrics = read(base, service, "/api/v1/metrics")
        assert metrics["sessions"] == sum(visits(journey) for journey in journeys)
    finally:
        assert service.stop(), service.output()


def test_a_lone_visitors_cart_is_counted_abandoned_without_more_traffic(tmp_path: Path) -> None:
    """Nobody else visits: the embedded sessionizer's clock follows the wall clock once no
    event has come for KLANTREIS_IDLE_AFTER_SECONDS, so the cart still runs out."""
    model = tmp_path / "quick-carts.toml"
    default = (resources.files("contracts.phase_models") / "default.toml").read_text()
    model.write_text(default.replace('abandon_after = "1h"', 'abandon_after = "2s"'))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = up(
        tmp_path, port, KLANTREIS_PHASE_MODEL=str(model), KLANTREIS_IDLE_AFTER_SECONDS="1",
        KLANTREIS_ALLOWED_LATENESS_MINUTES="0",
    )  # fmt: skip
    try:
        for event in JOURNEY[:2] + [{"type": "track", "event": "Product Added",
                                     "anonymous_id": "visitor-1"}]:  # fmt: skip
            response = httpx.post(f"{base}/v1/events", json=event, auth=("demo", ""))
            assert response.status_code == 200, response.text
        posted = time.monotonic()
        while True:
            metrics = read(base, service, "/api/v1/metrics")
            if metrics["carts_abandoned"] == 1:
                break
            assert time.monotonic() - posted < 30, metrics
            time.sleep(0.25)
    finally:
        assert service.stop(), service.output()


def test_the_command_line_manages_sites_and_erases_through_the_running_app(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = up(tmp_path, port)
    env = {**os.environ, "KLANTREIS_DATA_DIR": str(tmp_path / "var"), "PORT": str(port)}

    def klantreis(*args: str) -> Any:
        done = subprocess.run(
            [KLANTREIS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "dora" not in done.stderr  # no log line names the customer
        return json.loads(done.stdout) if done.stdout.startswith(("{", "[")) else done.stdout

    try:
        site = klantreis("sites", "add", "boutique", "--host", "boutique.example")
        (write_key,) = site["write_keys"]
        token = klantreis("sites", "add-token", "boutique", "--name", "analyst")["token"]
        page = {"type": "page", "user_id": "dora@example.com"}
        assert httpx.post(f"{base}/v1/events", json=page, auth=(write_key, "")).status_code == 200
        read = httpx.get(f"{base}/api/v1/metrics", params={"site": "boutique", "token": token})
        assert read.status_code == 200
        listed = klantreis("sites", "list")["sites"]
        assert {s["site_id"] for s in listed} == {"demo", "boutique"}
        erased = klantreis("erase", "--site", "boutique", "dora@example.com")
        assert erased["status"] == "complete" and erased["rows_deleted"] >= 1
        journey = httpx.get(
            f"{base}/api/v1/customers/dora@example.com/journey",
            params={"site": "boutique", "token": token},
        )
        assert journey.status_code == 404
        (boutique,) = [s for s in listed if s["site_id"] == "boutique"]
        revoked = klantreis("sites", "revoke", "boutique", boutique["read_tokens"][0]["token_id"])
        assert "revoked" in revoked
        after = httpx.get(f"{base}/api/v1/metrics", params={"site": "boutique", "token": token})
        assert after.status_code == 401
    finally:
        assert service.stop(), service.output()
    refused = subprocess.run(
        [KLANTREIS, "sites", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "cannot reach the admin API" in refused.stderr
