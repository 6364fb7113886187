"""`GET /v1/contacts/{contact}/proof`: one contact's whole ledger and the check of its chains."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from bot.db.consent_models import canonical_json, sha256_hex
from flows.consent import ConsentAction
from tests.bot.api.records_support import (
    AUTH,
    T0,
    ClientFactory,
    change,
    records_client,
    seed,
    services_of,
    validator,
)

WA = "15553330001"


async def test_the_proof_shows_every_event_and_a_verified_chain(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    contact_id = await seed(
        services,
        WA,
        change(ConsentAction.GRANTED, "p1"),
        change(ConsentAction.WITHDRAWN, "p2", at=T0 + timedelta(hours=1)),
        change(ConsentAction.GRANTED, "p3", category="reminders", at=T0 + timedelta(hours=2)),
    )
    await seed(services, "15553330002", change(ConsentAction.GRANTED, "other"))

    response = await client.get(f"/v1/contacts/{WA}/proof", headers=AUTH)

    assert response.status == 200
    proof = await response.json()
    validator("ContactProof").validate(proof)
    assert proof["contact"] == {"id": contact_id, "wa_id": WA, "user_id": None, "erased": False}
    assert [(i["kind"], i["value"], i["valid_to"]) for i in proof["identities"]] == [
        ("wa_id", WA, None)
    ]
    assert [(e["seq"], e["category"], e["action"]) for e in proof["events"]] == [
        (1, "marketing", "granted"),
        (2, "marketing", "withdrawn"),
        (3, "reminders", "granted"),
    ]
    first = proof["events"][0]
    assert first["evidence"] == {"ip": "203.0.113.7", "wording": "Send me offers", "key": "p1"}
    assert first["evidence_digest"] == sha256_hex(canonical_json(first["evidence"]))
    assert first["prev_hash"] == "0" * 64
    assert all(e["hash_valid"] and e["evidence_intact"] for e in proof["events"])
    assert [e["prev_hash"] for e in proof["events"][1:]] == [
        e["hash"] for e in proof["events"][:-1]
    ]
    assert proof["consent"]["marketing"]["status"] == "opted_out"
    assert proof["consent"]["marketing"]["event_id"] == proof["events"][1]["id"]
    assert proof["consent"]["reminders"]["status"] == "opted_in"
    assert proof["verification"] == {
        "ok": True,
        "chains_checked": 1,
        "rows_checked": 3,
        "rows_erased": 0,
        "rows_unkeyed": 0,
        "key_ids": [proof["events"][0]["key_id"]],
        "states_checked": 2,
        "problems": [],
    }
    assert "evidence_digest" in proof["hashing"]["covers"]
    assert "evidence_json" not in proof["hashing"]["covers"]


async def test_a_tampered_row_is_reported(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    contact_id = await seed(
        services,
        WA,
        change(ConsentAction.WITHDRAWN, "t1"),
        change(ConsentAction.GRANTED, "t2", at=T0 + timedelta(hours=1)),
    )
    forged = json.dumps({"ip": "198.51.100.1", "wording": "Send me offers", "key": "t2"})
    async with services.engine.begin() as connection:
        await connection.execute(
            text("UPDATE consent_events SET evidence_json = :e WHERE contact_id = :c AND seq = 2"),
            {"e": forged, "c": contact_id},
        )

    proof = await (await client.get(f"/v1/contacts/{WA}/proof", headers=AUTH)).json()

    validator("ContactProof").validate(proof)
    assert proof["verification"]["ok"] is False
    (problem,) = proof["verification"]["problems"]
    assert (problem["chain"], problem["seq"], problem["kind"]) == (
        contact_id,
        2,
        "evidence_mismatch",
    )
    tampered = proof["events"][1]
    assert tampered["evidence"]["ip"] == "198.51.100.1"
    assert (tampered["evidence_intact"], tampered["hash_valid"]) == (False, True)
    assert proof["events"][0]["evidence_intact"] is True

    async with services.engine.begin() as connection:
        await connection.execute(
            text("UPDATE consent_events SET action = 'granted' WHERE contact_id = :c AND seq = 1"),
            {"c": contact_id},
        )
    proof = await (await client.get(f"/v1/contacts/{WA}/proof", headers=AUTH)).json()
    assert [(p["seq"], p["kind"]) for p in proof["verification"]["problems"]] == [
        (1, "hash_mismatch")
    ]
    assert proof["events"][0]["hash_valid"] is False


async def test_no_proof_for_an_unknown_contact(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)

    response = await client.get("/v1/contacts/15550000000/proof", headers=AUTH)

    assert response.status == 404
    assert (await response.json())["error"] == "unknown_contact"
    assert (await client.get(f"/v1/contacts/{WA}/proof")).status == 401


async def test_hand_edits_that_keep_every_hash_are_reported_by_row(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression: a consent state flipped to opted_in, a foreign row moved into the contact and
    evidence "erased" without an erasure all showed `ok: true` in the proof."""
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    contact_id = await seed(
        services,
        WA,
        change(ConsentAction.GRANTED, "h1"),
        change(ConsentAction.WITHDRAWN, "h2", at=T0 + timedelta(hours=1)),
    )
    other_id = await seed(services, "15553330002", change(ConsentAction.GRANTED, "foreign"))
    ids = {e.event_key: e.id for e in await services.ledger.events_by_keys(["h1", "h2", "foreign"])}

    async def problems(statement: str, **params: object) -> list[tuple[int | None, str]]:
        async with services.engine.begin() as connection:
            await connection.execute(text(statement), params)
        proof = await (await client.get(f"/v1/contacts/{WA}/proof", headers=AUTH)).json()
        validator("ContactProof").validate(proof)
        assert proof["verification"]["ok"] is False
        return [(p["row_id"], p["kind"]) for p in proof["verification"]["problems"]]

    flipped = "UPDATE consent_states SET status = 'opted_in' WHERE contact_id = :c"
    assert await problems(flipped, c=contact_id) == [(ids["h2"], "state_mismatch")]
    restore = "UPDATE consent_states SET status = 'opted_out' WHERE contact_id = :c"
    moved = "UPDATE consent_events SET contact_id = :c WHERE id = :id"
    async with services.engine.begin() as connection:
        await connection.execute(text(restore), {"c": contact_id})
    assert await problems(moved, c=contact_id, id=ids["foreign"]) == [
        (ids["foreign"], "wrong_contact")
    ]
    async with services.engine.begin() as connection:
        await connection.execute(text(moved), {"c": other_id, "id": ids["foreign"]})
    erased = "UPDATE consent_events SET evidence_json = NULL, erased_at = :at WHERE id = :id"
    assert await problems(erased, at=T0 + timedelta(days=1), id=ids["h1"]) == [
        (ids["h1"], "erasure_unrecorded")
    ]
