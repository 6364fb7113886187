"""Dead inbound events, end to end: an event that fails five times is logged at ERROR, counted
and kept; `GET /v1/dead` and `optin-bot dead list` show it; replaying it (API or CLI) after the
cause is fixed applies it exactly once.

The bug: a dead event could not be put back, so a STOP acknowledged to Meta (200) and then
dead-lettered was lost for good.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import bot.inbound
from bot import cli
from bot.streams import DEAD_LETTER_STREAM, inbound_stream
from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, ChatOpener, every, opted_in
from tests.fakes.chat import Chat
from tests.fakes.webhooks import eventually

TOKEN = "dead-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BrokenWrite(RuntimeError):
    """A failure retrying does not cure (until an operator fixes it)."""


class Breaker:
    """Makes a service method fail until `fixed` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
        self.fixed = False
        original = getattr(target, name)

        async def maybe_fail(*args: Any, **kwargs: Any) -> Any:
            if not self.fixed:
                raise BrokenWrite(f"{name} is broken")
            return await original(*args, **kwargs)

        monkeypatch.setattr(target, name, maybe_fail)


async def dead_entries(chat: Chat, count: int = 1) -> list[Any]:
    async def arrived() -> list[Any] | None:
        entries = await chat.services.redis.xrange(DEAD_LETTER_STREAM)
        return list(entries) if len(entries) >= count else None

    result: list[Any] = await eventually(arrived, within=20)
    return result


def dead_counted(chat: Chat, reason: str) -> float:
    value = chat.services.metrics.registry.get_sample_value(
        "optin_dead_events_total", {"reason": reason}
    )
    return value or 0.0


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event here is meant to die: its five attempts need not wait a second in all."""
    monkeypatch.setattr(bot.inbound, "FIRST_RETRY_SECONDS", 0.005)


@pytest.fixture
async def api_chat(open_chat: ChatOpener) -> Chat:
    return await open_chat(api_token=TOKEN)


async def test_a_dead_stop_is_logged_listed_and_replayed_once_through_the_api(
    api_chat: Chat,
    en: LocaleCatalog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = api_chat
    await opted_in(chat)
    before = len(await chat.ledger())
    ledger = Breaker(monkeypatch, chat.services.ledger, "apply")
    with caplog.at_level(logging.ERROR, logger="bot.inbound"):
        wamid = await chat.say("STOP", wait=False)
        (dead,) = await dead_entries(chat)

    assert dead_counted(chat, "failed") == 1.0
    assert any(
        r.levelno == logging.ERROR and "is dead (failed after 5 attempt(s))" in r.getMessage()
        for r in caplog.records
    )
    assert await chat.consent() == every("opted_in")

    client = chat.client
    assert (await client.get("/v1/dead")).status == 401
    listed = await (await client.get("/v1/dead", headers=AUTH)).json()
    assert listed["total"] == 1 and listed["next_cursor"] is None
    (shown,) = listed["dead"]
    assert shown["dead_id"] == dead[0]
    assert shown["reason"] == "failed" and shown["attempts"] == 5
    assert shown["event_id"] == f"msg:{wamid}"
    assert shown["contact"]["wa_id"] == chat.wa_id
    assert "apply is broken" in shown["error"]

    ledger.fixed = True
    replayed = await client.post(f"/v1/dead/{shown['dead_id']}/replay", headers=AUTH)
    assert replayed.status == 202
    assert (await replayed.json())["outcome"] == "replayed"
    await chat.wait_idle()

    assert await chat.consent() == every("opted_out")
    assert len(await chat.ledger()) == before + 4
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    again = await client.post(f"/v1/dead/{shown['dead_id']}/replay", headers=AUTH)
    assert again.status == 404
    assert (await again.json())["error"] == "unknown_dead_event"
    assert (await client.post("/v1/dead/not-an-id/replay", headers=AUTH)).status == 404
    assert (await (await client.get("/v1/dead", headers=AUTH)).json())["total"] == 0


async def test_concurrent_replays_queue_the_event_once(
    api_chat: Chat, en: LocaleCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = api_chat
    ledger = Breaker(monkeypatch, chat.services.ledger, "apply")
    await chat.say("STOP", wait=False)
    ((dead_id, _),) = await dead_entries(chat)
    ledger.fixed = True

    answers = await asyncio.gather(
        *(chat.client.post(f"/v1/dead/{dead_id}/replay", headers=AUTH) for _ in range(4))
    )
    assert sorted(a.status for a in answers) == [202, 404, 404, 404]
    await chat.wait_idle()
    assert len(await chat.ledger()) == 4
    assert len(await chat.replies()) == 1


async def dead_cli(chat: Chat, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> int:
    """`optin-bot dead …`, configured by the environment like an operator's."""
    monkeypatch.chdir(tmp_path)  # no developer's .env
    monkeypatch.setenv("REDIS_URL", chat.settings.redis_url)
    return await asyncio.to_thread(cli.main, ["dead", *args])


async def test_replaying_an_event_already_applied_does_not_apply_it_twice(
    chat: Chat,
    en: LocaleCatalog,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The STOP was recorded, then queuing its confirmation failed five times: replaying it
    (CLI) sends the confirmation and records nothing again."""
    enqueue = Breaker(monkeypatch, chat.services.outbound_queue, "enqueue")
    wamid = await chat.say("STOP", wait=False)
    ((dead_id, _),) = await dead_entries(chat)
    assert await chat.consent() == every("opted_out")
    assert len(await chat.ledger()) == 4
    capsys.readouterr()

    assert await dead_cli(chat, monkeypatch, tmp_path, "list") == 0
    listing = capsys.readouterr().out
    assert dead_id in listing and f"event=msg:{wamid}" in listing
    assert f"contact={chat.wa_id}" in listing and "attempts=5" in listing

    enqueue.fixed = True
    assert await dead_cli(chat, monkeypatch, tmp_path, "replay", dead_id) == 0
    assert f"replayed {dead_id}" in capsys.readouterr().out
    await chat.wait_idle()

    assert len(await chat.ledger()) == 4
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    assert await dead_cli(chat, monkeypatch, tmp_path, "replay", dead_id) == 2
    assert f"no dead event {dead_id}" in capsys.readouterr().err


async def test_replay_all_puts_every_dead_event_back_and_keeps_the_undecodable(
    api_chat: Chat,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chat = api_chat
    ledger = Breaker(monkeypatch, chat.services.ledger, "apply")
    await chat.say("STOP", wait=False)
    await chat.say("STOP", wa_id="15550009002", wait=False)
    await chat.services.redis.xadd(inbound_stream(0), {"e": "not an event"})
    entries = await dead_entries(chat, 3)
    assert dead_counted(chat, "undecodable") == 1.0
    undecodable = next(i for i, f in entries if f["reason"] == "undecodable")
    ledger.fixed = True

    assert await dead_cli(chat, monkeypatch, tmp_path, "replay", undecodable) == 1
    assert "holds no readable event" in capsys.readouterr().err
    answer = await chat.client.post("/v1/dead/replay", headers=AUTH)
    body = await answer.json()
    assert answer.status == 202
    assert body["replayed"] == 2 and body["undecodable"] == [undecodable]
    await eventually(lambda: _opted_out_both(chat), within=15)
    assert await dead_cli(chat, monkeypatch, tmp_path, "replay", "--all") == 0
    assert "replayed 0 of 1 dead event(s)" in capsys.readouterr().out
    assert await dead_cli(chat, monkeypatch, tmp_path, "list", "--limit", "0") == 2


async def _opted_out_both(chat: Chat) -> bool:
    return await chat.consent() == every("opted_out") and await chat.consent(
        "15550009002"
    ) == every("opted_out")


async def test_the_dead_list_is_paginated_newest_first(api_chat: Chat) -> None:
    chat = api_chat
    redis = chat.services.redis
    ids = [await redis.xadd(DEAD_LETTER_STREAM, {"e": "x", "error": f"e{n}"}) for n in range(3)]

    first = await (await chat.client.get("/v1/dead?limit=2", headers=AUTH)).json()
    assert [d["dead_id"] for d in first["dead"]] == [ids[2], ids[1]]
    assert first["next_cursor"] == ids[1] and first["total"] == 3
    assert all(d["reason"] == "undecodable" for d in first["dead"])
    rest = await (
        await chat.client.get(f"/v1/dead?limit=2&cursor={first['next_cursor']}", headers=AUTH)
    ).json()
    assert [d["dead_id"] for d in rest["dead"]] == [ids[0]] and rest["next_cursor"] is None
    assert (await chat.client.get("/v1/dead?limit=0", headers=AUTH)).status == 422
    assert (await chat.client.get("/v1/dead?cursor=x", headers=AUTH)).status == 422


async def test_dead_events_kept_trims_the_oldest_logged_and_counted(
    open_chat: ChatOpener, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DEAD_EVENTS_KEPT reaches the workers: past it, the oldest dead event is trimmed, logged
    at ERROR and counted in optin_dead_letters_trimmed_total{stream="optin:dead"}."""
    chat = await open_chat(api_token=TOKEN, dead_events_kept=1)
    Breaker(monkeypatch, chat.services.ledger, "apply")
    with caplog.at_level(logging.ERROR, logger="bot.inbound"):
        first = await chat.say("STOP", wait=False)
        await dead_entries(chat)
        second = await chat.say("STOP", wa_id="15550009002", wait=False)

        async def trimmed() -> bool:
            entries = await chat.services.redis.xrange(DEAD_LETTER_STREAM)
            return [f["event_id"] for _, f in entries] == [f"msg:{second}"]

        await eventually(trimmed, within=20)

    assert dead_counted(chat, "failed") == 2.0
    assert (
        chat.services.metrics.registry.get_sample_value(
            "optin_dead_letters_trimmed_total", {"stream": DEAD_LETTER_STREAM}
        )
        == 1.0
    )
    assert any(
        "trimmed 1 oldest dead events" in r.getMessage() and f"msg:{first}" in r.getMessage()
        for r in caplog.records
    )
