"""Workers follow the business's keyword changes: a version recorded and published by one
process is in force in another's worker within seconds, on the embedded store and on Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.conversations import NO_OVERLAY_VERSION
from bot.keywords_store import API
from bot.live_language import publish_version
from bot.services import open_services
from flows.keywords import Command
from tests.fakes.webhooks import eventually

OVERLAY = '[en.opt_out]\nadd = ["ENOUGH"]\nremove = ["STOP IT"]\n'


async def test_a_change_reaches_another_worker_within_seconds(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Two processes' services on one database and Redis: a version recorded and published by
    one is in force in the other's worker within a couple of polls."""
    database_url, redis_url = stack_urls
    settings = settings_for(database_url=database_url, redis_url=redis_url)
    async with (
        open_services(settings, auto_migrate=False) as web,
        open_services(settings, auto_migrate=False) as worker,
    ):
        stop = asyncio.Event()
        watcher = asyncio.create_task(worker.keywords.run(stop, interval=0.2))
        try:
            assert worker.keywords.current.keywords_version == NO_OVERLAY_VERSION
            overlay = web.keywords.base.parse(OVERLAY)
            stored = await web.keyword_store.record(overlay, OVERLAY, origin=API, changed_by="t")
            await publish_version(web.redis, stored.label)
            started = asyncio.get_running_loop().time()

            async def taken() -> bool:
                return worker.keywords.current.keywords_version == stored.label

            await eventually(taken, within=3.0)
            assert asyncio.get_running_loop().time() - started < 3.0
            matcher = worker.keywords.current.matcher
            found = matcher.match("enough")
            assert found is not None and found.command is Command.STOP_ALL
            assert matcher.match("stop it") is None
            assert worker.keywords.reloads == 1

            # The Redis key lost (Redis emptied): the next poll finds the version in the
            # database and writes the key again.
            await web.redis.delete("optin:keywords:version")
            assert await worker.keywords.refresh() is False
            assert await web.redis.get("optin:keywords:version") == stored.label
            # A key behind the database (a process that started while Redis was down published
            # nothing) is brought forward too.
            await web.redis.set("optin:keywords:version", NO_OVERLAY_VERSION)
            assert await worker.keywords.refresh() is False
            assert await web.redis.get("optin:keywords:version") == stored.label
        finally:
            stop.set()
            await watcher
