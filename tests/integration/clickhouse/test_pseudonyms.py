"""With pseudonymous user ids, the embedded pipeline keeps no customer's address in any table or
in its state file, and the read API still finds the customer by it."""

from __future__ import annotations

from pathlib import Path

from klantreis import quickstart
from tests.support.embedded import AUTH, embedded_app

CAROL = "carol@example.com"


async def test_no_table_or_state_holds_the_address_and_the_api_finds_carol(
    chdb_dsn: str, tmp_path: Path
) -> None:
    journey = [
        {"type": "page", "anonymous_id": "phone"},
        {"type": "identify", "anonymous_id": "phone", "user_id": CAROL, "traits": {"email": CAROL}},
        {"type": "track", "event": "Order Completed", "user_id": CAROL},
        {"type": "track", "user_id": CAROL},  # refused: a track needs its name
    ]
    async with embedded_app(chdb_dsn, tmp_path, pseudonymize_user_ids=True) as (http, warehouse):
        for body in journey:
            await http.post("/v1/events", json=body, auth=AUTH)
        found = await http.get(f"/api/v1/customers/{CAROL}/journey", params={"site": "demo"})
        stored = {
            table: repr(warehouse.query(f"SELECT * FROM {{database}}.{table}"))
            for table in ("events", "sessions", "phase_transitions", "signals", "identities",
                          "dead_letters")
        }  # fmt: skip
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["customer_id"] == CAROL and "phone" in body["identities"]
    assert [step["to_phase"] for step in body["steps"]][-1] == "purchase"
    assert "u_" in stored["identities"] and "phone" in stored["identities"]
    assert stored["dead_letters"].count("u_") == 1
    state = (tmp_path / "sessionizer-state.json").read_text()
    assert "phone" in state
    leaks = [name for name, text in {**stored, "state": state}.items() if "example.com" in text]
    assert leaks == []
    assert (tmp_path / quickstart.PSEUDONYM_KEY_FILE).stat().st_mode & 0o077 == 0
