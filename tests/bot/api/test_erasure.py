"""`DELETE /v1/contacts/{contact}` and `optin-bot contact erase`: personal data goes, the STOP
stays, the ledger still verifies, and the person is recognised if they write again."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import inspect, text

from bot.console.audit import AuditLog
from bot.erasure import delete_entries_mentioning
from bot.services import Services, StartupError, check_startup
from bot.settings import SANDBOX_PSEUDONYM_KEY, SettingsError, load_settings
from bot.streams import DEAD_LETTER_STREAM
from flows.consent import ConsentAction
from flows.machine import TimerKind
from tests.bot.api.records_support import (
    AUTH,
    TOKEN,
    Client,
    ClientFactory,
    change,
    records_client,
    seed,
    services_of,
    validator,
)
from tests.fakes.webhooks import dumps, eventually, signed, status_webhook, text_webhook

NUMBER = "34612345678"
NAME = "Zoë Erasable"
GREETING = "Hola, soy Zoë, vivo en la calle Mayor 5"
CATEGORIES = ["marketing", "order_updates", "reminders", "account_alerts"]


def meta_wamid(wa_id: str) -> str:
    """A message id as Meta makes them: base64 of a record that holds the phone number."""
    record = (
        b"\x1c\x18"
        + bytes([len(wa_id)])
        + wa_id.encode()
        + b"\x15\x02\x00\x12\x18\x14"
        + uuid.uuid4().hex[:20].upper().encode()
        + b"\x00"
    )
    return "wamid." + base64.b64encode(record).decode()


async def say(client: Client, body: str, wamid: str) -> None:
    payload = dumps(text_webhook(wa_id=NUMBER, text=body, wamid=wamid, name=NAME))
    assert (await client.post("/webhook", data=payload, headers=signed(payload))).status == 200


async def consent(client: Client, contact: str = NUMBER) -> dict[str, Any] | None:
    response = await client.get(f"/v1/contacts/{contact}/consent", headers=AUTH)
    return dict(await response.json()) if response.status == 200 else None


async def can_send(client: Client, category: str, kind: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/contacts/{NUMBER}/can-send", params={"category": category, "kind": kind}, headers=AUTH
    )
    return dict(await response.json())


async def database_text(services: Services) -> str:
    """Every value of every row of every table, as one string to search."""
    parts: list[str] = []
    async with services.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        for table in tables:
            rows = (await connection.execute(text(f'SELECT * FROM "{table}"'))).all()
            parts.extend(f"{table}: {row!r}" for row in rows)
    return "\n".join(parts)


async def redis_value(redis: Redis, name: str) -> Any:
    kind = await redis.type(name)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return await redis.get(name)
    if kind == "hash":
        return await redis.hgetall(name)
    if kind == "zset":
        return await redis.zrange(name, 0, -1, withscores=True)
    if kind == "stream":
        return await redis.xrange(name)
    if kind == "list":
        return await redis.lrange(name, 0, -1)
    return await redis.smembers(name)


async def redis_text(redis: Redis) -> tuple[str, list[str]]:
    """Every key and value in Redis as one string, except the webhook de-duplication markers
    (returned apart: they name message ids and expire by themselves)."""
    parts: list[str] = []
    dedupe: list[str] = []
    async for key in redis.scan_iter(count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name.startswith("optin:seen:"):
            dedupe.append(name)
            continue
        parts.append(f"{name}: {await redis_value(redis, name)!r}")
    return "\n".join(parts), dedupe


async def test_erasure_end_to_end(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    wamids = [meta_wamid(NUMBER) for _ in range(4)]
    await say(client, GREETING, wamids[0])
    await say(client, "STOP", wamids[1])

    async def stopped() -> dict[str, Any] | None:
        data = await consent(client)
        statuses = {c["status"] for c in (data or {"categories": {}})["categories"].values()}
        return data if statuses == {"opted_out"} else None

    contact_id = (await eventually(stopped))["contact"]["id"]
    await say(client, "START", wamids[2])

    async def prompted() -> bool:
        return await services.timers.due_at(contact_id, TimerKind.OPTIN_EXPIRY) is not None

    await eventually(prompted)

    async def replies_sent() -> bool:
        rows = await services.transcript.list_for_contact(contact_id)
        outbound = [r for r in rows if r.direction == "outbound"]
        return len(outbound) >= 2 and all(r.status != "queued" for r in outbound)

    await eventually(replies_sent)
    assert await services.ledger.conversation(contact_id) is not None
    assert await services.window.closes_at(contact_id) is not None
    failed_event = json.dumps({"contact": {"wa_id": NUMBER, "profile_name": NAME}})
    await services.redis.xadd(DEAD_LETTER_STREAM, {"e": failed_event, "error": "boom"})
    await services.redis.xadd(DEAD_LETTER_STREAM, {"e": '{"contact":{"wa_id":"15559876543"}}'})
    rows_before = (await services.ledger.verify(contact_id)).rows_checked

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    receipt = await response.json()
    validator("ErasureReceipt").validate(receipt)
    pseudonym = receipt["contact"]["wa_id"]
    assert receipt["contact"] == {"id": contact_id, "wa_id": pseudonym, "user_id": None}
    assert pseudonym.startswith("erased:") and NUMBER not in pseudonym
    assert receipt["already_erased"] is False
    assert receipt["withdrawn_categories"] == CATEGORIES
    erased = receipt["erased"]
    assert erased["ledger_evidence"] == rows_before
    assert erased["identities"] == 1 and erased["conversations"] == 1
    assert erased["transcript_entries"] >= 5
    # The window, the opt-in timer, the dead letter, and the delivered markers of the two
    # messages the sandbox kept (STOP's confirmation and the prompt): they hold the wamids the
    # messages were kept under, which are treated as Meta's are.
    assert erased["redis_entries"] == 5

    # No personal data left anywhere: the number, the name, the message, the message ids.
    everything = await database_text(services)
    for secret in (NUMBER, NAME, "Zoë", "calle Mayor", *wamids[:3]):
        assert secret not in everything, secret
    in_redis, dedupe_markers = await redis_text(services.redis)
    for secret in (NUMBER, NAME, "calle Mayor", *wamids[:3]):
        assert secret not in in_redis, secret
    assert "15559876543" in in_redis  # someone else's dead letter stays
    for marker in dedupe_markers:
        assert await services.redis.ttl(marker) > 0
    assert await services.window.closes_at(contact_id) is None
    assert await services.ledger.conversation(contact_id) is None
    for kind in TimerKind:
        assert await services.timers.due_at(contact_id, kind) is None

    # The ledger still verifies and still says: withdrawn, everywhere.
    report = await services.ledger.verify(contact_id)
    assert report.ok and report.rows_erased == rows_before
    assert report.rows_checked == rows_before + len(CATEGORIES)
    data = await consent(client)
    assert data is not None and data["contact"]["wa_id"] == pseudonym
    assert {c["status"] for c in data["categories"].values()} == {"opted_out"}
    assert {c["method"] for c in data["categories"].values()} == {"erasure"}
    for category, kind in (("marketing", "template"), ("order_updates", "text")):
        answer = await can_send(client, category, kind)
        assert (answer["allowed"], answer["reason"]) == (False, "opted_out"), answer
    proof = await (await client.get(f"/v1/contacts/{NUMBER}/proof", headers=AUTH)).json()
    assert proof["contact"]["erased"] is True and proof["verification"]["ok"] is True
    kept = [e for e in proof["events"] if e["evidence"] is not None]
    assert [e["method"] for e in kept] == ["erasure"] * len(CATEGORIES)
    assert kept[0]["evidence"] == {"erasure_id": receipt["erasure_id"], "requested_via": "api"}
    assert all(e["event_key"].startswith(("erased:", "erasure:")) for e in proof["events"])
    exported = await (await client.get("/v1/export/consents", headers=AUTH)).text()
    assert pseudonym in exported and NUMBER not in exported

    # Asking again is safe, and says it was done already.
    again = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)
    assert again.status == 200
    second = await again.json()
    validator("ErasureReceipt").validate(second)
    assert second["already_erased"] is True
    assert (second["erasure_id"], second["erased_at"]) == (
        receipt["erasure_id"],
        receipt["erased_at"],
    )
    assert second["contact"] == receipt["contact"] and second["withdrawn_categories"] == []
    assert set(second["erased"].values()) == {0}

    # Regression: a late status of a message sent before the erasure bound the real number back
    # onto the erased record and stored Meta's message id (which encodes the number).
    statuses_before = await services.transcript.list_for_contact(contact_id)
    registry = services.metrics.registry

    def statuses_handled() -> float:
        value = registry.get_sample_value("optin_events_processed_total", {"kind": "status"})
        return value or 0.0

    handled = statuses_handled()
    late = dumps(status_webhook(wamid=wamids[2], status="read", recipient=NUMBER))
    assert (await client.post("/webhook", data=late, headers=signed(late))).status == 200

    async def status_handled() -> bool:
        return statuses_handled() > handled

    await eventually(status_handled)
    assert (await consent(client))["contact"]["wa_id"] == pseudonym  # type: ignore[index]
    assert await services.transcript.list_for_contact(contact_id) == statuses_before
    everything = await database_text(services)
    assert NUMBER not in everything and wamids[2] not in everything

    # The same number writing again is the same, do-not-contact person.
    await say(client, "Hello again", wamids[3])

    async def back() -> dict[str, Any] | None:
        data = await consent(client)
        return data if data and data["contact"]["wa_id"] == NUMBER else None

    returned = await eventually(back)
    assert returned["contact"]["id"] == contact_id
    assert {c["status"] for c in returned["categories"].values()} == {"opted_out"}
    for category, kind in (("marketing", "template"), ("order_updates", "text")):
        answer = await can_send(client, category, kind)
        assert (answer["allowed"], answer["reason"]) == (False, "opted_out"), answer
    assert (await services.ledger.verify()).ok


async def test_erasing_an_unknown_contact_is_404(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)

    response = await client.delete("/v1/contacts/15550000000", headers=AUTH)

    assert response.status == 404
    assert (await response.json())["error"] == "unknown_contact"
    assert (await client.delete(f"/v1/contacts/{NUMBER}")).status == 401


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WHATSAPP_", "GRAPH_", "DATABASE_", "REDIS_", "API_TOKEN"))
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_erases_a_contact(
    aiohttp_client: ClientFactory,
    stack_urls: tuple[str, str],
    settings_for: Any,
    tmp_path: Path,
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    contact_id = await seed(
        services,
        NUMBER,
        change(ConsentAction.GRANTED, "c1", evidence={"ip": "203.0.113.7", "name": NAME}),
    )
    database_url, redis_url = stack_urls
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "BUSINESS_NAME": "Acme Shoes"}

    code, out, err = await run_cli("contact", "erase", NUMBER, env=env, cwd=tmp_path)

    assert code == 0, err
    receipt = json.loads(out)
    validator("ErasureReceipt").validate(receipt)
    assert receipt["contact"]["id"] == contact_id and receipt["erased"]["ledger_evidence"] == 1
    contact = await services.contacts.find(NUMBER)
    assert contact is not None and contact.id == contact_id
    assert contact.wa_id == receipt["contact"]["wa_id"] != NUMBER
    views = await services.ledger.current(contact_id)
    assert {v.status.value for v in views.values()} == {"opted_out"}
    events = await services.ledger.events(contact_id)
    assert json.loads(events[-1].evidence_json or "{}")["requested_via"] == "cli"
    assert NAME not in await database_text(services)

    code, out, err = await run_cli("contact", "erase", "15550000000", env=env, cwd=tmp_path)
    assert code == 2 and "no contact 15550000000" in err


def test_a_live_service_needs_its_own_pseudonym_key() -> None:
    live = {"WHATSAPP_ACCESS_TOKEN": "t", "WHATSAPP_APP_SECRET": "s"}
    with pytest.raises(SettingsError, match="PSEUDONYM_KEY"):
        load_settings({**live, "PSEUDONYM_KEY": "too short"}, env_file=None)
    with pytest.raises(StartupError, match="PSEUDONYM_KEY"):
        check_startup(
            load_settings(live, env_file=None), insecure_no_signature=False, multi_process=False
        )
    keyed = load_settings(
        {**live, "PSEUDONYM_KEY": "k" * 32, "LEDGER_KEY": "l" * 32}, env_file=None
    )
    check_startup(keyed, insecure_no_signature=False, multi_process=False)
    assert keyed.pseudonym_secret == b"k" * 32
    sandbox = load_settings({}, env_file=None)
    assert sandbox.pseudonym_secret == SANDBOX_PSEUDONYM_KEY.encode()


async def test_kept_events_naming_the_contact_are_deleted_page_by_page(
    redis_client: Redis,
) -> None:
    for n in range(25):
        owner = NUMBER if n % 5 == 0 else f"3461234567{n % 10}9"
        await redis_client.xadd(DEAD_LETTER_STREAM, {"e": json.dumps({"wa_id": owner}), "n": n})
    await redis_client.xadd(DEAD_LETTER_STREAM, {"e": f"raw text from US.1349{NUMBER}"})

    deleted = await delete_entries_mentioning(
        redis_client, DEAD_LETTER_STREAM, (NUMBER, "US.777"), batch=4
    )

    assert deleted == 5
    left = await redis_client.xrange(DEAD_LETTER_STREAM)
    # Only whole identifiers count: 346123456789 and US.1349<number> are someone else.
    assert len(left) == 21 and all(json.loads(f["e"])["wa_id"] != NUMBER for _, f in left[:-1])
    assert await delete_entries_mentioning(redis_client, "optin:nothing", (NUMBER,)) == 0


async def test_the_consoles_audit_entries_about_the_contact_are_deleted(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Agents' notes are free text about the person: erasure deletes the contact's audit trail
    (its own stream and its entries in the console-wide one); other contacts' entries stay."""
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    contact_id = await seed(services, NUMBER)
    other_id = await seed(services, "34699999999")
    audit = AuditLog(services.redis)
    for n in range(3):
        await audit.record(
            agent="alice",
            action="withdraw",
            contact_id=contact_id,
            detail={"note": f"Zoë phoned, lives at calle Mayor ({n})"},
        )
    await audit.record(agent="alice", action="reveal", contact_id=other_id)
    await audit.record(agent="alice", action="login", detail={"remote": "198.51.100.7"})

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    assert (await response.json())["erased"]["redis_entries"] == 3
    assert await audit.for_contact(contact_id) == []
    assert [(e.action, e.contact_id) for e in await audit.latest()] == [
        ("login", None),
        ("reveal", other_id),
    ]
    assert len(await audit.for_contact(other_id)) == 1


async def test_the_business_apis_remembered_answers_about_the_contact_are_deleted(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression (issue 9, item 7): erasure left the number in Redis, in the answer cached
    for an `Idempotency-Key` (`optin:idem:messages:*:answer`, 24 h), which keeps the contact's
    `wa_id` and `profile_name`."""
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    other = "34699999999"
    await say(client, "Hola", meta_wamid(NUMBER))
    payload = dumps(text_webhook(wa_id=other, text="Hi", wamid=meta_wamid(other), name="Other"))
    assert (await client.post("/webhook", data=payload, headers=signed(payload))).status == 200

    async def both_known() -> bool:
        return all(
            data is not None and data["contact"]["profile_name"] is not None
            for data in (await consent(client), await consent(client, other))
        )

    await eventually(both_known)
    message = {"category": "order_updates", "text": "Your order has shipped"}
    for to, key in ((NUMBER, "order-1"), (other, "order-2")):
        sent = await client.post(
            "/v1/messages", json={"to": to, **message}, headers={**AUTH, "Idempotency-Key": key}
        )
        assert sent.status == 202, await sent.text()
    cached, _ = await redis_text(services.redis)
    assert NUMBER in cached and "Erasable" in cached and other in cached

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    assert (await response.json())["erased"]["redis_entries"] >= 2  # the window and the answer
    in_redis, _ = await redis_text(services.redis)
    for secret in (NUMBER, "Erasable", "Zo\\u00eb", "Zoë"):
        assert secret not in in_redis, secret
    assert other in in_redis  # another contact's remembered answer stays
    retried = await client.post(
        "/v1/messages",
        json={"to": NUMBER, **message},
        headers={**AUTH, "Idempotency-Key": "order-1"},
    )
    assert retried.status != 202
    assert "Erasable" not in await retried.text() and NUMBER not in await retried.text()


async def test_the_senders_markers_keep_no_message_id_of_the_contact(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """The markers that stop a second send (`optin:delivered:<id>`, `optin:send:outcome:<tag>`)
    hold Meta's message id, which encodes the number: erasure keeps the markers (and their
    expiry) but replaces the id by its `erased:` digest."""
    from bot.db.consent_models import erased_event_key
    from bot.redis_keys import DELIVERED, SEND_OUTCOME

    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    await say(client, "Hola", meta_wamid(NUMBER))
    contact_id = (await eventually(lambda: consent(client)))["contact"]["id"]
    sent = await client.post(
        "/v1/messages",
        json={"to": NUMBER, "category": "order_updates", "text": "Shipped"},
        headers={**AUTH, "Idempotency-Key": "order-9"},
    )
    assert sent.status == 202, await sent.text()
    message_id = (await sent.json())["message_id"]

    async def recorded() -> bool:
        rows = await services.transcript.list_for_contact(contact_id)
        return any(r.message_id == message_id for r in rows)

    await eventually(recorded)
    wamid = meta_wamid(NUMBER)  # what a live sender would have kept
    markers = [DELIVERED.format(message_id=message_id), SEND_OUTCOME.format(tag=message_id)]
    for marker in markers:
        await services.redis.set(marker, wamid, ex=3600)

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    for marker in markers:
        assert await services.redis.get(marker) == erased_event_key(wamid)
        assert 0 < await services.redis.ttl(marker) <= 3600
    in_redis, _ = await redis_text(services.redis)
    assert wamid not in in_redis and NUMBER not in in_redis


async def test_the_number_leaves_the_sandboxs_list(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """The sandbox remembers the numbers played in it (`optin:sandbox:contacts`): an erased
    number goes from that list too; the others stay."""
    from bot.redis_keys import SANDBOX_CONTACTS

    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    await seed(services, NUMBER)
    await services.redis.sadd(SANDBOX_CONTACTS.name, NUMBER, "34699999999")

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    assert (await response.json())["erased"]["redis_entries"] == 1
    assert await services.redis.smembers(SANDBOX_CONTACTS.name) == {"34699999999"}


async def test_a_message_still_queued_for_an_erased_contact_is_deleted_and_does_not_go(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression: the outbound queue (`optin:out`) kept a message queued before the erasure,
    with the erased number in it, until the sender got to it (and then it still went out).
    Erasure deletes the entries naming the contact; another contact's entry stays."""
    from bot.app import create_app
    from bot.roles import Role
    from bot.streams import OUTBOUND_STREAM

    database_url, redis_url = stack_urls
    settings = settings_for(database_url=database_url, redis_url=redis_url, api_token=TOKEN)
    # The web role alone: no sender takes the entries off the queue while the test looks.
    client = await aiohttp_client(create_app(settings, roles=[Role.WEB]))
    services = services_of(client)
    await seed(services, NUMBER)
    await services.redis.xadd(OUTBOUND_STREAM, {"send": json.dumps({"to": NUMBER, "text": "Hi"})})
    other = json.dumps({"to": "15559876543", "text": "Hi"})
    await services.redis.xadd(OUTBOUND_STREAM, {"send": other})

    response = await client.delete(f"/v1/contacts/{NUMBER}", headers=AUTH)

    assert response.status == 200
    left = [fields for _, fields in await services.redis.xrange(OUTBOUND_STREAM)]
    assert left == [{"send": other}]
