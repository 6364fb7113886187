"""Keyword versions in the database: KEYWORDS_FILE is recorded when its content changes, and
the newest change (file or API) is in force after a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.keywords_store import API, FILE
from bot.services import open_services
from flows.keywords import Command

OVERLAY = '[en.opt_out]\nadd = ["ENOUGH"]\nremove = ["STOP IT"]\n'


async def test_the_file_is_recorded_once_and_an_api_change_survives_a_restart(
    stack_urls: tuple[str, str], settings_for: Any, tmp_path: Path
) -> None:
    database_url, redis_url = stack_urls
    text = '[en.help]\nadd = ["SUPPORT"]\n'
    settings = settings_for(
        database_url=database_url,
        redis_url=redis_url,
        keywords_file=str(tmp_path / "keywords.toml"),
        keywords_text=text,
    )
    async with open_services(settings, auto_migrate=False) as first:
        stored = await first.keyword_store.latest()
        assert stored is not None and stored.origin == FILE and stored.number == 1
        assert first.keywords.current.keywords_version == stored.label
        assert stored.changed_by == str(tmp_path / "keywords.toml")
        overlay = first.keywords.base.parse(OVERLAY)
        await first.keyword_store.record(overlay, OVERLAY, origin=API, changed_by="maria")
    async with open_services(settings, auto_migrate=False) as again:
        # The file did not change: the API's version stays in force.
        assert again.keywords.current.keywords_version.startswith("2-")
        found = again.keywords.current.matcher.match("enough")
        assert found is not None and found.command is Command.STOP_ALL
    edited = replace(settings, keywords_text=text + '[en.opt_in]\nadd = ["COME BACK"]\n')
    async with open_services(edited, auto_migrate=False) as third:
        # The file changed: it is the newest change, and wins.
        assert third.keywords.current.keywords_version.startswith("3-")
        assert third.keywords.current.matcher.match("enough") is None
        history = await third.keyword_store.history()
        assert [v.origin for v in history] == [FILE, API, FILE]
