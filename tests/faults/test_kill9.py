"""`kill -9` of a worker and of a sender in the middle of many inbound STOPs and a campaign.

One web, two worker and two sender processes (`optin-bot web|worker|sender`, production timings)
share one Redis and one PostgreSQL. Customers who never wrote before send STOP while a re-consent
campaign goes out to seeded opted-in contacts; the test plays Meta, reporting a `sent` status for
every message the fake Graph server accepted. A third of the way through the STOPs one worker is
killed with SIGKILL, a third of the way through the campaign one sender is, and each is
restarted. Afterwards every STOP is recorded exactly once (one `withdrawn` row per category,
every hash chain intact), every STOP customer got its confirmation, and every campaign recipient
got the template exactly once: nobody twice, nobody skipped.

CI sends 1,000 STOPs while 1,000 recipients are messaged (about three minutes on 2 cores, a
minute of it the 60 s after which a killed sender's messages are reclaimed); the issue's full
size is `KILL9_STOPS=10000 KILL9_RECIPIENTS=10000` (the workers process 8 to 25 STOPs/s on
2 shared cores; the full run took 21 minutes at a load average of 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.db.engine import create_engine
from tests.fakes.consent_seed import seed_opted_in, wa_id_of
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook
from tests.faults.cluster import (
    PHONE_NUMBER_ID,
    count,
    free_port,
    ledger_chains_verified,
    live_env,
    logs_of,
    start,
    stop,
    wait_up,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]
STOPS = int(os.environ.get("KILL9_STOPS", "1000"))
GRACE_SECONDS = 20
RECIPIENTS = int(os.environ.get("KILL9_RECIPIENTS", "1000"))
CAMPAIGN_RATE = 50  # messages/s: the campaign lasts long enough to be interrupted
CATEGORIES = 4
SECRET = "kill9-secret"
API_TOKEN = "kill9-token"
# Generous bounds that grow with the size (about 20 STOPs/s on 2 busy cores).
PHASE_SECONDS = max(300.0, (STOPS + RECIPIENTS) / 10)


def stopper(n: int) -> str:
    return f"1888{n:07d}"


def campaign_body() -> dict[str, Any]:
    return {
        "name": "policy 2",
        "template": {
            "name": "reconsent_v2",
            "language": "en_US",
            "body_parameters": ["{business_name}"],
        },
        "audience": {"categories": ["marketing"], "older_than_days": 365},
        "policy_version": "2",
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "rate": CAMPAIGN_RATE,
    }


def statuses(accepted: list[Any]) -> bytes:
    """Meta's `sent` statuses, with the callback tag, for messages it accepted."""
    items = []
    for message in accepted:
        item = {
            "id": message.wamid,
            "status": "sent",
            "timestamp": str(int(datetime.now(UTC).timestamp())),
            "recipient_id": str(message.body.get("to")),
        }
        if message.body.get("biz_opaque_callback_data") is not None:
            item["biz_opaque_callback_data"] = message.body["biz_opaque_callback_data"]
        items.append(item)
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": items,
    }
    change = {"field": "messages", "value": value}
    entry = {"id": "102290129340398", "changes": [change]}
    return dumps({"object": "whatsapp_business_account", "entry": [entry]})


async def test_sigkill_of_a_worker_and_a_sender_loses_and_repeats_nothing(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    engine = create_engine(database_url)
    try:
        await seed_opted_in(engine, RECIPIENTS, since=datetime.now(UTC) - timedelta(days=400))
    finally:
        await engine.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with FakeGraph(validate=False) as graph:
        env = {
            **live_env(database_url, redis_url, graph.base_url, SECRET),
            "API_TOKEN": API_TOKEN,
            # A template whose send the SIGKILL interrupted before Meta saw it is sent again
            # after this grace (5 minutes in production): short, so the test can wait for it.
            "SEND_GUARD_GRACE_SECONDS": str(GRACE_SECONDS),
        }
        procs = {
            "web": await start(env, tmp_path, ["web", "--port", str(port)], log_name="web"),
            "worker-a": await start(env, tmp_path, ["worker"], log_name="worker-a"),
            "worker-b": await start(env, tmp_path, ["worker"], log_name="worker-b"),
            "sender-a": await start(env, tmp_path, ["sender"], log_name="sender-a"),
            "sender-b": await start(env, tmp_path, ["sender"], log_name="sender-b"),
        }
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as session:
                await wait_up(session, [port], list(procs.values()), tmp_path)
                meta_done = asyncio.Event()
                meta = asyncio.create_task(play_meta(session, base, graph, meta_done))
                try:
                    async with session.post(f"{base}/v1/campaigns", json=campaign_body()) as r:
                        assert r.status == 201, await r.text()
                        campaign_id = (await r.json())["id"]
                    async with session.post(f"{base}/v1/campaigns/{campaign_id}/start") as r:
                        assert r.status == 200, await r.text()
                    posting = asyncio.create_task(post_stops(session, base))

                    async def withdrawn() -> int:
                        return await count(
                            database_url,
                            "SELECT count(*) FROM consent_events WHERE action = 'withdrawn'",
                        )

                    def still_healthy() -> None:
                        """Fail at once, with the logs, when a process or one of its loops died."""
                        logs = logs_of(tmp_path)
                        assert "CRITICAL" not in logs, logs
                        assert all(p.returncode is None for p in procs.values()), logs

                    async def a_third_stopped() -> bool:
                        still_healthy()
                        return await withdrawn() >= STOPS * CATEGORIES // 3

                    async def a_third_sent() -> bool:
                        still_healthy()
                        return len(templates(graph)) >= RECIPIENTS // 3

                    for victim, condition in (
                        ("worker-a", a_third_stopped),
                        ("sender-a", a_third_sent),
                    ):
                        await eventually(condition, within=PHASE_SECONDS, interval=0.05)
                        procs[victim].send_signal(signal.SIGKILL)
                        await procs[victim].wait()
                        role = victim.split("-")[0]
                        procs[victim] = await start(env, tmp_path, [role], log_name=victim)
                    await posting

                    async def done() -> bool:
                        still_healthy()
                        async with session.get(f"{base}/v1/campaigns/{campaign_id}") as r:
                            report = await r.json()
                        stops_confirmed = {to for to, kind in sent_to(graph) if kind == "text"} >= {
                            stopper(n) for n in range(STOPS)
                        }
                        everyone = len({body["to"] for body in templates(graph)})
                        return (
                            report["status"] == "completed"
                            and await withdrawn() >= STOPS * CATEGORIES
                            and stops_confirmed
                            and everyone >= RECIPIENTS
                        )

                    # A killed sender's messages are reclaimed after 60 s, its campaign lease
                    # lapses after 10 s; a send interrupted before Meta saw it waits the grace.
                    # Regression: "done" once meant "all queued", so recipients whose send the
                    # kill interrupted (sent again only after the grace) were counted as missed.
                    await eventually(done, within=PHASE_SECONDS + 120, interval=1.0)
                    await asyncio.sleep(5)  # a late duplicate would arrive now

                    # The killed sender's unflushed `sent` marks are made good by Meta's `sent`
                    # statuses once the workers get to them (CI once read 998 of 1,000 too soon).
                    async def all_marked_sent() -> dict[str, Any] | None:
                        async with session.get(f"{base}/v1/campaigns/{campaign_id}") as r:
                            body: dict[str, Any] = await r.json()
                        return body if body["counts"]["sent"] >= RECIPIENTS else None

                    report = await eventually(all_marked_sent, within=240, interval=1.0)
                finally:
                    meta_done.set()
                    await meta
        finally:
            await stop(list(procs.values()))
    messaged = Counter(str(body["to"]) for body in templates(graph))
    twice = {number: n for number, n in messaged.items() if n > 1}
    assert twice == {}, f"{len(twice)} campaign recipients messaged more than once"
    assert set(messaged) == {wa_id_of(n) for n in range(RECIPIENTS)}, "nobody skipped"
    assert report["counts"]["sent"] == RECIPIENTS, report
    assert report["counts"]["skipped"] == report["counts"]["failed"] == 0, report
    per_stopper = await count(
        database_url,
        "SELECT count(*) FROM (SELECT contact_id, category FROM consent_events "
        "WHERE action = 'withdrawn' GROUP BY contact_id, category HAVING count(*) > 1) AS twice",
    )
    assert per_stopper == 0, "a STOP recorded twice"
    withdrawn_rows = await count(
        database_url, "SELECT count(*) FROM consent_events WHERE action = 'withdrawn'"
    )
    assert withdrawn_rows == STOPS * CATEGORIES, "every STOP recorded exactly once"
    assert await ledger_chains_verified(database_url) == STOPS + RECIPIENTS
    confirmations = Counter(to for to, kind in sent_to(graph) if kind == "text")
    repeated = sum(1 for n in range(STOPS) if confirmations[stopper(n)] > 1)
    # Plain replies are sent at least once (a sender killed after Meta accepted one and before
    # acknowledging it sends it again when its message is reclaimed); report how many were.
    print(f"STOP confirmations sent more than once after the kills: {repeated} of {STOPS}")


async def post_stops(session: aiohttp.ClientSession, base: str) -> None:
    semaphore = asyncio.Semaphore(32)

    async def post(n: int) -> None:
        body = dumps(text_webhook(wa_id=stopper(n), text="STOP", wamid=f"wamid.kill9.{n}"))
        async with (
            semaphore,
            session.post(f"{base}/webhook", data=body, headers=signed(body, SECRET)) as r,
        ):
            assert r.status == 200

    await asyncio.gather(*(post(n) for n in range(STOPS)))


async def play_meta(
    session: aiohttp.ClientSession, base: str, graph: FakeGraph, done: asyncio.Event
) -> None:
    """Report a `sent` status for each accepted message, as Meta does, until `done`."""
    reported = 0
    while not done.is_set():
        fresh = graph.accepted[reported:]
        reported += len(fresh)
        for first in range(0, len(fresh), 100):
            body = statuses(fresh[first : first + 100])
            async with session.post(
                f"{base}/webhook", data=body, headers=signed(body, SECRET)
            ) as r:
                assert r.status == 200
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=0.1)


def templates(graph: FakeGraph) -> list[dict[str, Any]]:
    return [r.json for r in graph.requests if (r.json or {}).get("type") == "template"]


def sent_to(graph: FakeGraph) -> list[tuple[str, str]]:
    return [(str(r.json["to"]), str(r.json.get("type"))) for r in graph.requests if r.json]
