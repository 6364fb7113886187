"""The embedded defaults keep what they acknowledge across a restart.

Regression: on `REDIS_URL=memory://` a restart forgot the 24-hour windows, the flows' timers and
the queues (a customer who wrote minutes ago showed "window closed", a pending opt-in never
expired, a queued confirmation was never sent), although the README said they survive.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.bot.test_cli import free_port, http, output_of, process, wait_healthy
from tests.fakes.webhooks import dumps, eventually, text_webhook

CALLER = "15550100001"  # wrote once: their window must stay open
JOINER = "15550100002"  # sent START: their pending opt-in must expire on time
QUITTER = "15550100003"  # sent STOP: their confirmation is queued behind the rate limit
EXPIRY_HOURS = 0.004  # 14.4 s


async def post_webhook(session: aiohttp.ClientSession, port: int, wa_id: str, text: str) -> None:
    # Stamped now (each customer here writes once): the opt-in expiry is counted from it, and
    # the test times the deadline from the moment it posts.
    body = dumps(text_webhook(wa_id=wa_id, text=text, timestamp=int(time.time())))
    async with session.post(
        f"http://127.0.0.1:{port}/webhook",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 200, await response.text()


async def get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def outbound(session: aiohttp.ClientSession, port: int, wa_id: str) -> list[dict[str, Any]]:
    """The bot's messages to `wa_id`; none while the contact is not recorded yet."""
    url = f"http://127.0.0.1:{port}/v1/contacts/{wa_id}/transcript"
    async with session.get(url) as response:
        if response.status == 404:
            return []
        assert response.status == 200, await response.text()
        body = await response.json()
    return [e for e in body["entries"] if e["direction"] == "outbound"]


async def statuses(session: aiohttp.ClientSession, port: int, wa_id: str) -> set[str]:
    """Each category's status; empty while the contact is not recorded yet."""
    async with session.get(f"http://127.0.0.1:{port}/v1/contacts/{wa_id}/consent") as response:
        if response.status == 404:
            return set()
        assert response.status == 200, await response.text()
        body = await response.json()
    return {c["status"] for c in body["categories"].values()}


async def test_a_restart_keeps_windows_timers_and_queued_messages(tmp_path: Path) -> None:
    port = free_port()
    # One message per 10 s: the STOP's confirmation waits in the queue behind the opt-in prompt.
    slow = {"OPTIN_EXPIRY_HOURS": str(EXPIRY_HOURS), "SEND_RATE": "0.1"}
    with process("serve", "--port", str(port), env=slow, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)
            await post_webhook(session, port, CALLER, "hello, is the shop open?")
            await post_webhook(session, port, JOINER, "START")
            started = time.monotonic()

            async def prompt_sent() -> bool:
                return bool(await outbound(session, port, JOINER))

            await eventually(prompt_sent, within=20)
            await post_webhook(session, port, QUITTER, "STOP")

            async def confirmation_queued() -> list[dict[str, Any]]:
                return await outbound(session, port, QUITTER)

            queued = await eventually(confirmation_queued, within=20)
            assert [m["status"] for m in queued] == ["queued"], queued
            assert await statuses(session, port, JOINER) == {"pending"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert (tmp_path / "optin.db.redis").exists()

    with process("serve", "--port", str(port), env={}, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)
            answer = await get_json(
                session,
                f"http://127.0.0.1:{port}/v1/contacts/{CALLER}/can-send"
                "?category=order_updates&kind=text",
            )
            assert answer["window_open"] is True, answer

            async def confirmation_sent() -> bool:
                messages = await outbound(session, port, QUITTER)
                return [m["status"] for m in messages] == ["sandbox"]

            await eventually(confirmation_sent, within=20)
            # The opt-in prompt's expiry timer was set before the restart and fires after it,
            # on time: still pending before the deadline, expired soon after it.
            remaining = EXPIRY_HOURS * 3600 - (time.monotonic() - started)
            if remaining > 2:
                assert await statuses(session, port, JOINER) == {"pending"}

            async def expired() -> bool:
                return "pending" not in await statuses(session, port, JOINER)

            await eventually(expired, within=max(remaining, 0) + 15, interval=0.5)
    out = output_of(proc)
    assert "keys restored from optin.db.redis" in out


@pytest.mark.slow  # a kill test, two server starts and a drain: about 20 s
async def test_an_acknowledged_webhook_survives_sigkill(tmp_path: Path) -> None:
    """What the embedded service answered 200 is on disk already: kill -9 loses nothing."""
    port = free_port()
    with process("serve", "--port", str(port), env={"SEND_RATE": "0.1"}, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)
            await asyncio.gather(
                *(post_webhook(session, port, f"1555020{i:04d}", "STOP") for i in range(20))
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    with process("serve", "--port", str(port), env={}, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)

            async def all_opted_out() -> bool:
                for i in range(20):
                    if await statuses(session, port, f"1555020{i:04d}") != {"opted_out"}:
                        return False
                return True

            await eventually(all_opted_out, within=30, interval=0.5)
