"""The keywords and replies in force in a running process, following the business's changes.

`PUT /v1/keywords` records a new version in the database and writes its label to Redis
(`optin:keywords:version`). Each worker process runs `LiveLanguage.run` (the `keywords-watcher`
task), which reads that key every `POLL_SECONDS`; when the label differs from the one in force it
loads the newest version from the database, checks it against this process's locale files and
swaps in a whole new `Language` (catalogs, keyword matcher, stop-intent scorer) in one
assignment. A worker reads `current` once per event, so an event is handled entirely under one
version, and a change reaches every worker within about a second. Should the Redis key be lost
(Redis emptied) or behind the database, the next poll writes it again from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import redis_keys
from bot.conversations import NO_OVERLAY_VERSION, Language
from bot.keyword_checks import check_overlay
from bot.keyword_overrides import (
    EMPTY,
    KeywordOverlay,
    OverlayRefused,
    apply_overlay,
    overlay_from_data,
    parse_overlay,
)
from bot.keywords_store import KeywordStore, StoredVersion
from flows.consent import Category
from flows.locale_catalog import LocaleCatalog
from flows.stop_intent import StopWords

__all__ = ["POLL_SECONDS", "LanguageBase", "LiveLanguage", "publish_version"]

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 1.0
VERSION_KEY: Final = redis_keys.KEYWORDS_VERSION.name


@dataclass(frozen=True, slots=True)
class LanguageBase:
    """What an overlay is laid over: the locale files, the categories, the default locale and
    the stop-intent data of this process."""

    catalogs: Mapping[str, LocaleCatalog]
    categories: Sequence[Category]
    default_locale: str
    stop_words: Mapping[str, StopWords] | None = None

    def parse(self, text: str) -> KeywordOverlay:
        """A TOML overlay, checked; `OverlayRefused` with every problem and its line."""
        overlay, locator = parse_overlay(text, self.catalogs)
        problems = check_overlay(overlay, self.catalogs, locator, self.category_names)
        if problems:
            raise OverlayRefused(problems)
        return overlay

    def parse_data(self, data: object) -> KeywordOverlay:
        """A JSON overlay, checked; `OverlayRefused` naming each key."""
        overlay = overlay_from_data(data, self.catalogs)
        problems = check_overlay(overlay, self.catalogs, None, self.category_names)
        if problems:
            raise OverlayRefused(problems)
        return overlay

    @property
    def category_names(self) -> list[str]:
        return [category.name for category in self.categories]

    def build(self, overlay: KeywordOverlay, version: str) -> Language:
        """The `Language` of the locale files with `overlay` laid over them."""
        catalogs = apply_overlay(overlay, self.catalogs) if not overlay.empty else self.catalogs
        return Language.build(
            catalogs,
            self.categories,
            self.default_locale,
            self.stop_words,
            keywords_version=version,
        )

    def build_stored(self, stored: StoredVersion | None) -> Language:
        """The `Language` of a stored version (None: the locale files alone)."""
        if stored is None:
            return self.build(EMPTY, NO_OVERLAY_VERSION)
        return self.build(self.parse_data(stored.overlay), stored.label)


async def publish_version(redis: Redis, label: str, *, best_effort: bool = False) -> None:
    """Tell every worker that `label` is the version in force. `best_effort` (at startup):
    with Redis down, log and go on; the watchers write the key from the database later."""
    try:
        await redis.set(VERSION_KEY, label)
    except (RedisError, OSError) as exc:
        if not best_effort:
            raise
        log.warning("keywords version %s not published yet (Redis: %s)", label, exc)


class LiveLanguage:
    """The `LanguageSource` of a worker process: `current` is the version in force."""

    def __init__(
        self, base: LanguageBase, language: Language, store: KeywordStore, redis: Redis
    ) -> None:
        self.base = base
        self._language = language
        self._store = store
        self._redis = redis
        self._refused: str | None = None
        self.reloads = 0

    @property
    def current(self) -> Language:
        return self._language

    def put(self, language: Language) -> None:
        """Put `language` in force in this process now (the API's own process does not wait
        for its poll)."""
        self._language = language

    async def refresh(self) -> bool:
        """One poll: swap in the newest version when the published label differs from the one
        in force. True when it swapped."""
        raw = await self._redis.get(VERSION_KEY)
        label = raw.decode() if isinstance(raw, bytes) else raw
        if label == self._language.keywords_version:
            return False
        stored = await self._store.latest()
        newest = stored.label if stored else NO_OVERLAY_VERSION
        if label != newest:
            # The key was lost (Redis emptied), never written (Redis was down when a process
            # started) or overtaken by a newer change: the database is the truth.
            await self._redis.set(VERSION_KEY, newest)
        if newest in (self._language.keywords_version, self._refused):
            return False
        try:
            # Building the matcher takes about 0.1 s of CPU: off the event loop, so webhooks
            # are still acknowledged meanwhile.
            language = await asyncio.to_thread(self.base.build_stored, stored)
        except (OverlayRefused, ValueError) as exc:
            # Another version of the service (a rolling upgrade) may accept what these locale
            # files do not: keep the version in force, say so once.
            self._refused = newest
            log.error("keywords version %s not applied here, keeping %s: %s", newest,
                      self._language.keywords_version, exc)  # fmt: skip
            return False
        self._language = language
        self.reloads += 1
        log.info("keywords version %s in force", newest)
        return True

    async def run(self, stop: asyncio.Event, interval: float = POLL_SECONDS) -> None:
        """Poll until `stop` is set."""
        while not stop.is_set():
            await self.refresh()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue
