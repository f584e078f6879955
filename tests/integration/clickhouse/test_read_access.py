"""Who may read what, on the embedded app: every read route needs a read token of its site or
the admin token; the admin routes need the admin token; sites and tokens made through the admin
API work at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from klantreis import quickstart
from tests.support.embedded import ADMIN_TOKEN, ANONYMOUS, AUTH, PAGE, embedded

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ_ROUTES = [
    ("/api/v1/funnel", {}),
    ("/api/v1/funnels/steps", {"step": ["page", "Order Completed"]}),
    ("/api/v1/customers/carol@example.com/journey", {}),
    ("/api/v1/dropoff", {}),
    ("/api/v1/metrics", {}),
    ("/api/v1/touchpoints", {}),
    ("/api/v1/trends", {}),
    ("/api/v1/breakdown", {}),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def shop(chdb_dsn: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The demo site with carol's order, and a second site, `other`, made by the admin."""
    async with embedded(chdb_dsn, tmp_path) as http:
        carol = {"type": "track", "event": "Order Completed", "user_id": "carol@example.com"}
        for body in (PAGE, carol):
            assert (await http.post("/v1/events", json=body, auth=AUTH)).status_code == 200
        made = await http.post("/api/v1/admin/sites", json={"site_id": "other"}, headers=ADMIN)
        assert made.status_code == 201, made.text
        yield http


async def token_for(http: httpx.AsyncClient, site: str) -> str:
    issued = await http.post(
        f"/api/v1/admin/sites/{site}/tokens", json={"name": "t"}, headers=ADMIN
    )
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


async def test_every_read_route_needs_a_token_of_its_site(shop: httpx.AsyncClient) -> None:
    demo_token, other_token = await token_for(shop, "demo"), await token_for(shop, "other")
    for path, params in READ_ROUTES:
        query = {"site": "demo", **params}
        anonymous = await shop.get(path, params=query, extensions=ANONYMOUS)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        other = await shop.get(path, params=query, headers=bearer(other_token))
        assert (other.status_code, other.json()["error"]) == (403, "forbidden"), path
        write_key = await shop.get(path, params=query, headers=bearer("demo"))
        assert (write_key.status_code, write_key.json()["error"]) == (403, "write_key"), path
        basic = await shop.get(path, params=query, auth=AUTH)
        assert basic.status_code == 403, path
        forged = await shop.get(path, params=query, headers=bearer(demo_token + "x"))
        assert forged.status_code == 401, path
        allowed = await shop.get(path, params=query, headers=bearer(demo_token))
        assert allowed.status_code == 200, (path, allowed.text)
        admin = await shop.get(path, params=query, headers=ADMIN)
        assert admin.status_code == 200, (path, admin.text)


async def test_the_journey_of_a_customer_is_private(shop: httpx.AsyncClient) -> None:
    """A stranger learns nothing, not even whether someone shops there: a 404 for an unknown
    customer only answers a caller allowed to read the site."""
    other_token = await token_for(shop, "other")
    path = "/api/v1/customers/{}/journey"
    for customer in ("carol@example.com", "nobody@example.com"):
        stranger = await shop.get(
            path.format(customer), params={"site": "demo"}, extensions=ANONYMOUS
        )
        assert stranger.status_code == 401
        outsider = await shop.get(
            path.format(customer), params={"site": "demo"}, headers=bearer(other_token)
        )
        assert outsider.status_code == 403
    demo_token = await token_for(shop, "demo")
    known = await shop.get(
        path.format("carol@example.com"), params={"site": "demo"}, headers=bearer(demo_token)
    )
    assert known.status_code == 200 and known.json()["customer_id"] == "carol@example.com"
    unknown = await shop.get(
        path.format("nobody@example.com"), params={"site": "demo"}, headers=bearer(demo_token)
    )
    assert unknown.status_code == 404


async def test_a_token_of_one_site_cannot_tell_which_other_sites_exist(
    shop: httpx.AsyncClient,
) -> None:
    demo_token = await token_for(shop, "demo")
    for site in ("other", "no-such-site"):
        response = await shop.get(
            "/api/v1/metrics", params={"site": site}, headers=bearer(demo_token)
        )
        assert response.status_code == 403
    missing = await shop.get("/api/v1/metrics", params={"site": "no-such-site"}, headers=ADMIN)
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_site")


async def test_admin_routes_refuse_read_tokens_and_write_keys(shop: httpx.AsyncClient) -> None:
    demo_token = await token_for(shop, "demo")
    calls = [
        ("GET", "/api/v1/admin/sites", None),
        ("POST", "/api/v1/admin/sites", {"site_id": "mine"}),
        ("POST", "/api/v1/admin/sites/demo/tokens", {"name": "more"}),
        ("POST", "/api/v1/admin/sites/demo/write-key", None),
        ("PUT", "/api/v1/admin/sites/demo/hosts", ["evil.example"]),
    ]
    for method, path, body in calls:
        anonymous = await shop.request(method, path, json=body, extensions=ANONYMOUS)
        assert anonymous.status_code == 401, path
        for token in (demo_token, "demo"):
            refused = await shop.request(method, path, json=body, headers=bearer(token))
            assert refused.status_code == 403, (path, refused.text)
    listed = (await shop.get("/api/v1/admin/sites", headers=ADMIN)).json()["sites"]
    assert [site["site_id"] for site in listed] == ["demo", "other"]
    assert "digest" not in str(listed) and demo_token not in str(listed)


async def test_a_new_site_sends_and_reads_at_once_and_a_revoked_token_stops(
    shop: httpx.AsyncClient,
) -> None:
    made = await shop.post(
        "/api/v1/admin/sites",
        json={"site_id": "boutique", "hosts": ["boutique.example"]},
        headers=ADMIN,
    )
    (write_key,) = made.json()["write_keys"]
    sent = await shop.post("/v1/events", json=PAGE, auth=(write_key, ""))
    assert sent.status_code == 200, sent.text
    foreign = await shop.post(
        "/v1/events", json=PAGE, auth=(write_key, ""), headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403

    issued = (await shop.post("/api/v1/admin/sites/boutique/tokens", headers=ADMIN)).json()
    figures = await shop.get(
        "/api/v1/metrics", params={"site": "boutique"}, headers=bearer(issued["token"])
    )
    assert figures.status_code == 200
    revoked = await shop.delete(
        f"/api/v1/admin/sites/boutique/tokens/{issued['token_id']}", headers=ADMIN
    )
    assert revoked.status_code == 204
    after = await shop.get(
        "/api/v1/metrics", params={"site": "boutique"}, headers=bearer(issued["token"])
    )
    assert (after.status_code, after.json()["error"]) == (401, "invalid_token")

    rotated = (await shop.post("/api/v1/admin/sites/boutique/write-key", headers=ADMIN)).json()
    assert rotated["write_keys"] != [write_key]
    old = await shop.post("/v1/events", json=PAGE, auth=(write_key, ""))
    assert old.status_code == 401
    new = await shop.post("/v1/events", json=PAGE, auth=(rotated["write_keys"][0], ""))
    assert new.status_code == 200


async def test_admin_refusals_are_precise(shop: httpx.AsyncClient) -> None:
    again = await shop.post("/api/v1/admin/sites", json={"site_id": "other"}, headers=ADMIN)
    assert again.status_code == 409
    bad = await shop.post("/api/v1/admin/sites", json={"site_id": "a b/c"}, headers=ADMIN)
    assert bad.status_code == 422
    bad_host = await shop.put("/api/v1/admin/sites/demo/hosts", json=["<script>"], headers=ADMIN)
    assert bad_host.status_code == 422
    unknown = await shop.post("/api/v1/admin/sites/nope/tokens", headers=ADMIN)
    assert unknown.status_code == 404
    revoke = await shop.delete("/api/v1/admin/sites/demo/tokens/nope", headers=ADMIN)
    assert revoke.status_code == 404


async def test_sites_and_tokens_outlive_a_restart(chdb_dsn: str, tmp_path: Path) -> None:
    async with embedded(chdb_dsn, tmp_path) as http:
        await http.post("/api/v1/admin/sites", json={"site_id": "kept"}, headers=ADMIN)
        token = await token_for(http, "kept")
    async with embedded(chdb_dsn, tmp_path) as http:
        response = await http.get("/api/v1/metrics", params={"site": "kept"}, headers=bearer(token))
        assert response.status_code == 200
    assert (tmp_path / "sites.json").stat().st_mode & 0o077 == 0


async def test_the_first_start_makes_the_demo_read_token_and_keeps_it(
    chdb_dsn: str, tmp_path: Path
) -> None:
    async with embedded(chdb_dsn, tmp_path) as http:
        kept = (tmp_path / quickstart.DEMO_TOKEN_FILE).read_text().strip()
        response = await http.get(f"/api/v1/metrics?site=demo&token={kept}", extensions=ANONYMOUS)
        assert response.status_code == 200
    async with embedded(chdb_dsn, tmp_path):
        assert (tmp_path / quickstart.DEMO_TOKEN_FILE).read_text().strip() == kept
    assert (tmp_path / quickstart.DEMO_TOKEN_FILE).stat().st_mode & 0o077 == 0
