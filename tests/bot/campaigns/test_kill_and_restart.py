"""2,000 recipients, two sender processes, one killed with SIGKILL half way and restarted:
every recipient gets the template exactly once (counted at the recording Graph server).

The test process plays the web and worker roles and Meta, which reports each accepted message
with a `sent` status (carrying the callback tag) as the Cloud API does; that is how a restarted
sender tells a message that reached Meta before the kill from one that never left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.roles import Role
from tests.bot.campaigns.conftest import API_TOKEN, Harness, status_item
from tests.fakes.chat import Chat
from tests.fakes.consent_seed import wa_id_of
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import APP_SECRET, eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("sender_process.py")
RECIPIENTS = 2000


@contextlib.asynccontextmanager
async def sender_process(
    env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if line.strip() != b"ready":
            raise AssertionError(f"sender did not start; see {log}")
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def play_meta(harness: Harness, stop: asyncio.Event) -> None:
    """Report a `sent` status for every message the fake Graph server accepted, as Meta does."""
    reported = 0
    while not stop.is_set():
        fresh = harness.graph.accepted[reported:]
        reported += len(fresh)
        for start in range(0, len(fresh), 100):
            items = [
                status_item(
                    m.wamid, "sent", str(m.body.get("to")), m.body.get("biz_opaque_callback_data")
                )
                for m in fresh[start : start + 100]
            ]
            await harness.notify("messages", {"messaging_product": "whatsapp", "statuses": items})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)


async def test_no_one_twice_and_no_one_missed_across_a_sigkill(
    real_stack_urls: tuple[str, str], settings_for: Any, tmp_path: Path
) -> None:
    """Regression: the killed sender's last requests reached Meta, but the worker (many seconds
    behind on a loaded machine) had not yet processed their `sent` statuses when the grace ran
    out, so the guard resent them. Statuses now reach the guard at the webhook."""
    log = tmp_path / "senders.log"
    database_url, redis_url = real_stack_urls
    async with FakeGraph(validate=False) as graph:
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="t",
            graph_api_url=graph.base_url,
            api_token=API_TOKEN,
            send_rate=1000.0,
        )
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WHATSAPP_ACCESS_TOKEN": "t",
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "GRAPH_API_URL": graph.base_url,
            "SEND_RATE": "1000",
            "BUSINESS_NAME": "Acme Shoes",
        }
        app = create_app(settings, roles={Role.WEB, Role.WORKER}, auto_migrate=False)
        async with TestClient(TestServer(app)) as client:
            harness = Harness(Chat(client, graph=graph), graph)
            everyone = await harness.seed(RECIPIENTS)
            stop_meta = asyncio.Event()
            meta = asyncio.create_task(play_meta(harness, stop_meta))
            try:
                async with sender_process(env, log), sender_process(env, log) as doomed:
                    campaign_id = await harness.start(rate=400)
                    await eventually(
                        lambda: _count(len(harness.templates()) >= RECIPIENTS // 2),
                        within=240,
                        interval=0.01,
                    )
                    doomed.send_signal(signal.SIGKILL)
                    await doomed.wait()
                    async with sender_process(env, log):
                        await harness.until(
                            campaign_id, lambda r: r["status"] == "completed", within=300
                        )
                        # A send the kill interrupted before Meta saw it goes out again after
                        # the grace (30 s here) plus the reclaim (5 s): counted as missed when
                        # this waited only 30 s after completion.
                        await eventually(
                            lambda: _count(len(harness.templates()) >= RECIPIENTS),
                            within=90,
                        )
                        await asyncio.sleep(31)  # past the grace period: no late resend
                # The killed sender's unflushed sent marks are made good by Meta's `sent`
                # statuses, once the worker (often tens of seconds behind here) gets to them.
                report = await harness.until(
                    campaign_id, lambda r: r["counts"]["sent"] >= RECIPIENTS, within=240
                )
            finally:
                stop_meta.set()
                await meta

    messaged = Counter(str(body["to"]) for body in harness.templates())
    assert set(messaged) == {wa_id_of(n) for n in range(RECIPIENTS)} == set(everyone)
    twice = {number: n for number, n in messaged.items() if n > 1}
    assert twice == {}
    assert report["counts"]["queued"] == RECIPIENTS
    assert report["counts"]["sent"] == RECIPIENTS
    assert report["counts"]["skipped"] == report["counts"]["failed"] == 0


async def _count(value: bool) -> bool:
    return value
