"""Which templates may go: every marketing template must carry a way out.

`TemplateGuard.check(name, language)` is asked before a template is queued by `/v1/messages` and
before a campaign is created, started or resumed. It reads the template from an index:

- with `WHATSAPP_BUSINESS_ACCOUNT_ID` (and a token), Meta's own list of the account's templates
  (`CachedTemplateIndex`, read through `bot.graph.templates` and cached in Redis);
- in sandbox mode, the sandbox's list (`bot.message_templates.sandbox`);
- with a token but no account id, nothing: the service cannot know.

The answer, per (name, language):

- a `MARKETING` template with an opt-out (`bot.message_templates.optout`), or a `UTILITY` or
  `AUTHENTICATION` one: allowed;
- a `MARKETING` template without one: refused, `TemplateRefused("template_without_opt_out")`,
  naming the template and what it lacks;
- a name or language Meta's list does not hold: refused, `TemplateRefused("unknown_template")`
  (Meta would refuse to send it anyway, later and less clearly). The sandbox's list is only an
  example, so there an unlisted template is sent like an unverifiable one;
- nothing to read it from: sent, but logged at WARNING once per template name in the process
  and counted in `optin_templates_opt_out_unknown_total{template}` on every check, so an
  operator sees what is going out unchecked.

Meta's list is cached in one Redis hash per account (`optin:templates:{waba_id}`, one field per
template name plus the time it was read) shared by every process: read again once it is
`fresh_seconds` old (10 minutes), or when a name is missing from a list at least
`miss_refresh_seconds` old (a template approved a minute ago is found). When Meta cannot be read,
the previous list is used for as long as the key lives (`keep_seconds`, a day), with a warning;
with no list at all the check fails with `TemplatesUnavailable` (the API answers 503): a marketing
message that cannot be checked does not go. A process reads the list once at a time (a lock), and
after a failed read waits `retry_seconds` before trying Meta again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client import Counter
from redis.asyncio import Redis

from bot.graph.templates import TemplateListError
from bot.message_templates.optout import opt_out_of
from flows.keywords import KeywordMatcher

log = logging.getLogger(__name__)

MARKETING: Final = "MARKETING"
FRESH_SECONDS: Final = 600.0
KEEP_SECONDS: Final = 86_400
MISS_REFRESH_SECONDS: Final = 60.0
RETRY_SECONDS: Final = 30.0
#: The hash field holding when the list was read; template names are [a-z0-9_], so no clash.
FETCHED_FIELD: Final = ":fetched_at"
WAY_OUT_HINT: Final = (
    'a quick-reply button the customer taps to stop (Meta\'s "Stop promotions", or STOP) or a '
    'footer naming the stop word in capitals ("Reply STOP to unsubscribe")'
)


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """One language of one template, as the list describes it."""

    name: str
    language: str
    category: str
    status: str
    #: How it lets the customer stop ("quick reply 'Stop promotions'"), None when it does not.
    opt_out: str | None

    @property
    def marketing(self) -> bool:
        return self.category == MARKETING


Variants = Mapping[str, TemplateInfo]
"""A template's languages: language code -> what the list says of it."""


class TemplateRefused(ValueError):
    """The template may not go; `code` is the API's error code, the message its detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class TemplatesUnavailable(RuntimeError):
    """The template list could not be read and none is cached: nothing can be checked."""


@dataclass(frozen=True, slots=True)
class TemplateVerdict:
    """An allowed template: `info` when the list describes it, None when it could not be
    checked (`verified` False: sent with a warning)."""

    verified: bool
    info: TemplateInfo | None = None


def parse_templates(
    items: Iterable[Any], matcher: KeywordMatcher
) -> dict[str, dict[str, TemplateInfo]]:
    """Meta's list entries (`name`, `language`, `category`, `components`, `status`) by name
    and language; entries without a name or language are skipped."""
    found: dict[str, dict[str, TemplateInfo]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        name, language = item.get("name"), item.get("language")
        if not isinstance(name, str) or not isinstance(language, str):
            continue
        components = item.get("components")
        listed = (
            [c for c in components if isinstance(c, Mapping)]
            if isinstance(components, list)
            else []
        )
        found.setdefault(name, {})[language] = TemplateInfo(
            name=name,
            language=language,
            category=str(item.get("category") or "").upper(),
            status=str(item.get("status") or "").upper(),
            opt_out=opt_out_of(matcher, listed),
        )
    return found


class TemplateIndex(Protocol):
    """Where templates are looked up. `strict`: a name it does not list cannot be sent (Meta's
    list) rather than merely unchecked (the sandbox's example list)."""

    strict: bool
    description: str

    async def variants(self, name: str) -> Variants: ...


class StaticTemplateIndex:
    """A fixed list, held in memory (the sandbox's)."""

    def __init__(
        self, templates: Mapping[str, Variants], *, description: str, strict: bool = False
    ) -> None:
        self._templates = templates
        self.description = description
        self.strict = strict

    async def variants(self, name: str) -> Variants:
        return self._templates.get(name, {})


def _encode(variants: Variants) -> str:
    return json.dumps(
        {
            language: [info.category, info.status, info.opt_out]
            for language, info in sorted(variants.items())
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _decode(name: str, raw: object) -> Variants:
    if raw is None:
        return {}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    data = json.loads(text)
    return {
        language: TemplateInfo(name, language, category, status, opt_out)
        for language, (category, status, opt_out) in data.items()
    }


def _number(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None


class CachedTemplateIndex:
    """Meta's list of one account, cached in Redis (see the module docstring)."""

    strict = True

    def __init__(
        self,
        redis: Redis,
        key: str,
        fetch: Callable[[], Awaitable[list[dict[str, Any]]]],
        matcher: KeywordMatcher,
        *,
        description: str,
        fresh_seconds: float = FRESH_SECONDS,
        keep_seconds: int = KEEP_SECONDS,
        miss_refresh_seconds: float = MISS_REFRESH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._key = key
        self._fetch = fetch
        self._matcher = matcher
        self.description = description
        self._fresh = fresh_seconds
        self._keep = keep_seconds
        self._miss_refresh = miss_refresh_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._last_error: str | None = None

    async def variants(self, name: str) -> Variants:
        raw, stamp = await self._redis.hmget(self._key, [name, FETCHED_FIELD])
        fetched = _number(stamp)
        age = None if fetched is None else self._clock() - fetched
        if age is None or age >= self._fresh or (raw is None and age >= self._miss_refresh):
            if await self._refresh(fetched):
                raw = await self._redis.hget(self._key, name)
            elif fetched is None:
                raise TemplatesUnavailable(
                    f"the template list of {self.description} could not be read "
                    f"({self._last_error}); retry in a minute"
                )
        return _decode(name, raw)

    async def _refresh(self, seen: float | None) -> bool:
        """Read Meta's list into the cache; False when it could not be read (the caller keeps
        what the cache holds). Another caller's read since `seen` counts as done."""
        async with self._lock:
            current = _number(await self._redis.hget(self._key, FETCHED_FIELD))
            if current is not None and current != seen:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            try:
                items = await self._fetch()
            except TemplateListError as exc:
                self._retry_at = now + self._retry
                self._last_error = str(exc)
                log.warning(
                    "template list of %s not read (%s); %s",
                    self.description,
                    exc,
                    "keeping the one read before"
                    if seen is not None
                    else "templates cannot be checked until it is",
                )
                return False
            await self._store(parse_templates(items, self._matcher), now)
            return True

    async def _store(self, templates: Mapping[str, Variants], now: float) -> None:
        mapping: dict[bytes | bytearray | memoryview[int] | str | int | float, str] = {
            name: _encode(variants) for name, variants in templates.items()
        }
        mapping[FETCHED_FIELD] = repr(now)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key)
        pipe.hset(self._key, mapping=mapping)
        pipe.expire(self._key, self._keep)
        await pipe.execute()
        log.info("template list of %s read: %d templates", self.description, len(templates))


class TemplateGuard:
    """The decision of the module docstring, for one process."""

    def __init__(self, index: TemplateIndex | None, *, unknown: Counter | None = None) -> None:
        self._index = index
        self._unknown = unknown
        self._warned: set[str] = set()

    @property
    def verifying(self) -> bool:
        """Whether templates are checked against a list at all."""
        return self._index is not None

    async def languages(self, name: str) -> frozenset[str] | None:
        """The languages the list holds of `name`; None when there is no list to ask."""
        if self._index is None:
            return None
        return frozenset(await self._index.variants(name))

    async def check(self, name: str, language: str) -> TemplateVerdict:
        """Allowed (verified or not), or raises `TemplateRefused` / `TemplatesUnavailable`."""
        index = self._index
        if index is None:
            return self._unverified(name, "WHATSAPP_BUSINESS_ACCOUNT_ID is not set")
        variants = await index.variants(name)
        info = variants.get(language)
        if info is None:
            if not index.strict:
                return self._unverified(name, f"{index.description} does not list it")
            if not variants:
                raise TemplateRefused(
                    "unknown_template",
                    f"no template {name!r} in the template list of {index.description}: Meta "
                    "would refuse to send it",
                )
            raise TemplateRefused(
                "unknown_template",
                f"template {name!r} has no language {language!r} in the template list of "
                f"{index.description} (it has {', '.join(sorted(variants))})",
            )
        if info.marketing and info.opt_out is None:
            raise TemplateRefused(
                "template_without_opt_out",
                f"template {name!r} ({language}) is a MARKETING template without a way out: "
                f"it needs {WAY_OUT_HINT}",
            )
        return TemplateVerdict(True, info)

    def _unverified(self, name: str, why: str) -> TemplateVerdict:
        if self._unknown is not None:
            self._unknown.labels(template=name).inc()
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "template %s: cannot tell whether it carries an opt-out (%s); sending it "
                "unchecked (counted in optin_templates_opt_out_unknown_total)",
                name,
                why,
            )
        return TemplateVerdict(False)
