"""The composition root: builds every service of a process once, from `Settings`, and closes them.

Handlers and loops receive what they need from here (through `bot.appkeys` in the web app); nothing
else opens connections or reads configuration. The same `open_services` serves every role
(`serve`, `web`, `worker`, `sender`), so the roles differ only in which loops they start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.campaigns.wiring import register_campaign_tracking
from bot.categories import CategoriesError, load_categories
from bot.consent_gate import ConsentGate
from bot.conversations import Language
from bot.crm import CrmSync, open_crm_sync
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from bot.db.ledger_keys import attach_keys
from bot.db.migrate import migrate, schema_is_current
from bot.db.pseudonyms import Pseudonymiser
from bot.db.transcript import TranscriptRepository
from bot.graph import CloudApiClient
from bot.hooks import Hooks
from bot.keyword_overrides import EMPTY, KeywordOverlay, OverlayRefused, version_label
from bot.keywords_store import KeywordStore, StoredVersion
from bot.ledger_key import ledger_keys
from bot.live_language import LanguageBase, LiveLanguage, publish_version
from bot.locales import LocaleError, load_locales, load_stop_words
from bot.message_templates import TemplateGuard, template_guard
from bot.metrics import Metrics
from bot.outbound import OutboundQueue
from bot.redis_snapshot import RedisSnapshot, SnapshotError
from bot.redisconn import connect_redis, memory_server
from bot.sender import GraphTransport, SandboxTransport, Transport
from bot.settings import Settings, SettingsError
from bot.streams import InboundQueue
from bot.timers import TimerStore
from bot.window import WindowStore

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The process cannot start as configured; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    redis: Redis
    engine: AsyncEngine
    contacts: ContactRepository
    transcript: TranscriptRepository
    ledger: LedgerRepository
    inbound_queue: InboundQueue
    outbound_queue: OutboundQueue
    transport: Transport
    metrics: Metrics
    consumer: str
    language: Language
    timers: TimerStore
    window: WindowStore
    gate: ConsentGate
    hooks: Hooks
    #: Whether a template may go: a marketing one must carry a way out (`bot.message_templates`).
    templates: TemplateGuard
    #: The keywords and replies in force (`language` is the version the process started with).
    keywords: LiveLanguage
    keyword_store: KeywordStore
    crm: CrmSync | None = None  # set when BUSINESS_WEBHOOK_URL is
    #: Set on the embedded Redis with a file (`EMBEDDED_REDIS_FILE`): the web app waits for it
    #: before acknowledging a write, so what it acknowledged survives a restart.
    snapshot: RedisSnapshot | None = None


def consumer_name() -> str:
    """Unique per process and recognisable in `XINFO CONSUMERS`: host, pid, random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def check_startup(settings: Settings, *, insecure_no_signature: bool, multi_process: bool) -> None:
    """Refuse, before the first log line, a configuration the service cannot keep its promises
    with: a bad setting raises `SettingsError` naming it, anything else `StartupError`."""
    load_language(settings)
    if not settings.sandbox and settings.app_secret is None and not insecure_no_signature:
        raise StartupError(
            "WHATSAPP_APP_SECRET is required when WHATSAPP_ACCESS_TOKEN is set (it verifies "
            "Meta's X-Hub-Signature-256); pass --insecure-no-signature to run without it"
        )
    if not settings.sandbox and settings.pseudonym_key is None:
        raise StartupError(
            "PSEUDONYM_KEY is required when WHATSAPP_ACCESS_TOKEN is set (it keys the pseudonyms "
            "of erased contacts; see docs/erasure.md)"
        )
    if settings.ledger_key is None and (
        settings.api_token is not None or settings.access_token is not None
    ):
        raise SettingsError(
            "LEDGER_KEY",
            "required when API_TOKEN or WHATSAPP_ACCESS_TOKEN is set (it signs the consent "
            "ledger so its rows cannot be rewritten; see README, Proof of consent)",
        )
    if multi_process and settings.embedded_redis:
        raise StartupError(
            "REDIS_URL=memory:// lives inside one process; the web/worker/sender roles need a "
            "shared Redis (REDIS_URL=redis://…), or run everything with `optin-bot serve`"
        )


def describe_mode(settings: Settings) -> list[str]:
    """The first log lines: what this process will and will not do."""
    lines = []
    if settings.sandbox:
        lines.append(
            "SANDBOX MODE: no WHATSAPP_ACCESS_TOKEN, so nothing is sent to WhatsApp; outbound "
            "messages are kept in the transcript and the log"
        )
    else:
        lines.append(
            f"live mode: sending as number {settings.phone_number_id} via {settings.graph_api_url}"
        )
    if settings.embedded_database:
        lines.append(f"database: embedded SQLite ({settings.database_url})")
    else:
        lines.append("database: PostgreSQL")
    if settings.embedded_redis:
        lines.append(
            f"redis: embedded in-process store (memory://), saved to "
            f"{settings.redis_snapshot_file}: windows, timers, queues and de-duplication keys "
            f"survive a restart (one process on one machine)"
            if settings.redis_snapshot_file
            else "redis: embedded in-process store (memory://), EMBEDDED_REDIS_FILE=off: "
            "windows, timers and queued work end with the process"
        )
    else:
        lines.append("redis: external server")
    if settings.app_secret is None:
        lines.append("webhook signatures are NOT checked (WHATSAPP_APP_SECRET unset)")
    if settings.api_token is None and not settings.sandbox:
        lines.append("API_TOKEN unset: /v1 and /console answer 401")
    if not settings.sandbox and settings.business_account_id is None:
        lines.append(
            "WHATSAPP_BUSINESS_ACCOUNT_ID unset: templates are sent without checking that "
            "marketing ones carry an opt-out (each is logged once and counted)"
        )
    return lines


def load_language_base(settings: Settings) -> LanguageBase:
    """Locale files, categories and stop-intent data, checked before anything connects."""
    try:
        catalogs = load_locales()
    except LocaleError as exc:
        raise StartupError(str(exc)) from exc
    if settings.default_locale not in catalogs:
        raise SettingsError(
            "DEFAULT_LOCALE",
            f"no locale file for {settings.default_locale!r} "
            f"(available: {', '.join(sorted(catalogs))})",
        )
    try:
        categories = load_categories(settings.categories_file)
    except CategoriesError as exc:
        raise SettingsError("CATEGORIES_FILE", str(exc).removeprefix("CATEGORIES_FILE ")) from exc
    try:
        stop_words = load_stop_words(locales=list(catalogs))
    except LocaleError as exc:
        raise StartupError(str(exc)) from exc
    return LanguageBase(catalogs, categories, settings.default_locale, stop_words)


def file_overlay(settings: Settings, base: LanguageBase) -> KeywordOverlay:
    """`KEYWORDS_FILE`'s overlay, checked against the locale files; a refusal is a
    `SettingsError` naming the file, each line and why."""
    if settings.keywords_text is None:
        return EMPTY
    try:
        return base.parse(settings.keywords_text)
    except OverlayRefused as exc:
        where = settings.keywords_file or "KEYWORDS_FILE"
        raise SettingsError(
            "KEYWORDS_FILE", "; ".join(problem.describe(where) for problem in exc.problems)
        ) from exc


def load_language(settings: Settings) -> Language:
    """The locale files with `KEYWORDS_FILE` laid over them, checked before anything connects
    (the version's number is the database's: `open_services` labels it)."""
    base = load_language_base(settings)
    overlay = file_overlay(settings, base)
    try:
        return base.build(overlay, version_label(0, overlay.digest()))
    except ValueError as exc:
        raise StartupError(str(exc)) from exc


async def _language_in_force(
    settings: Settings, language: Language, base: LanguageBase, store: KeywordStore
) -> Language:
    """The version in force once `KEYWORDS_FILE` is recorded (see `bot.keywords_store`)."""
    overlay = file_overlay(settings, base)
    stored: StoredVersion | None
    if settings.keywords_text is not None:
        path = settings.keywords_file or "KEYWORDS_FILE"
        stored = await store.sync_file(overlay, settings.keywords_text, path)
    else:
        stored = await store.latest()
    if stored is None:
        return language
    if stored.digest == overlay.digest():
        return replace(language, keywords_version=stored.label)
    try:
        return base.build_stored(stored)
    except (OverlayRefused, ValueError) as exc:
        raise StartupError(
            f"keywords version {stored.number} ({stored.origin}, by {stored.changed_by}) does "
            f"not fit these locale files: {exc}; put a corrected overlay in KEYWORDS_FILE"
        ) from exc


@asynccontextmanager
async def open_services(settings: Settings, *, auto_migrate: bool) -> AsyncIterator[Services]:
    """Connect everything; migrate the embedded database when `auto_migrate` (serve)."""
    language = load_language(settings)
    base = load_language_base(settings)
    if auto_migrate and settings.embedded_database:
        await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    redis = connect_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
        client_name=settings.redis_client_name,
    )
    http: aiohttp.ClientSession | None = None
    crm: CrmSync | None = None
    snapshot: RedisSnapshot | None = None
    snapshot_stop = asyncio.Event()
    snapshot_task: asyncio.Task[None] | None = None
    try:
        if settings.embedded_redis and settings.redis_snapshot_file is not None:
            snapshot = RedisSnapshot(
                memory_server(settings.redis_url), Path(settings.redis_snapshot_file)
            )
            try:
                restored = snapshot.restore()
            except SnapshotError as exc:
                raise StartupError(
                    f"EMBEDDED_REDIS_FILE {settings.redis_snapshot_file}: {exc} (move it away "
                    f"to start empty)"
                ) from exc
            log.info(
                "embedded Redis: %d keys restored from %s; saved before every acknowledgement "
                "and every %g s",
                restored,
                settings.redis_snapshot_file,
                snapshot.interval,
            )
            snapshot_task = asyncio.create_task(snapshot.run(snapshot_stop), name="redis-snapshot")
        if not await schema_is_current(engine):
            raise StartupError(
                "the database schema is missing or out of date: run `optin-bot migrate`"
            )
        attach_keys(engine, ledger_keys(settings))
        sessions = session_factory(engine)
        keyword_store = KeywordStore(sessions)
        language = await _language_in_force(settings, language, base, keyword_store)
        await publish_version(redis, language.keywords_version, best_effort=True)
        transcript = TranscriptRepository(sessions)
        ledger = LedgerRepository(sessions)
        window = WindowStore(redis)
        transport: Transport
        if settings.access_token is None:
            transport = SandboxTransport()
        else:
            http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
                raise_for_status=False,
            )
            transport = GraphTransport(
                CloudApiClient(
                    http,
                    base_url=settings.graph_api_url,
                    phone_number_id=settings.phone_number_id,
                    access_token=settings.access_token,
                )
            )
        hooks = Hooks()
        register_campaign_tracking(hooks, sessions, redis, settings.phone_number_id)
        crm = open_crm_sync(settings, redis, ledger)
        if crm is not None:
            crm.register(hooks)
        metrics = Metrics(shared_dir=settings.metrics_dir)
        yield Services(
            settings=settings,
            redis=redis,
            engine=engine,
            contacts=ContactRepository(
                sessions, pseudonyms=Pseudonymiser(settings.pseudonym_secret)
            ),
            transcript=transcript,
            ledger=ledger,
            inbound_queue=InboundQueue(redis),
            outbound_queue=OutboundQueue(redis, transcript),
            transport=transport,
            metrics=metrics,
            consumer=consumer_name(),
            language=language,
            timers=TimerStore(redis),
            window=window,
            gate=ConsentGate(ledger, window, language.categories),
            hooks=hooks,
            templates=template_guard(
                settings,
                redis,
                language.catalogs,
                language.matcher,
                http,
                unknown=metrics.templates_opt_out_unknown,
            ),
            keywords=LiveLanguage(base, language, keyword_store, redis),
            keyword_store=keyword_store,
            crm=crm,
            snapshot=snapshot,
        )
    finally:
        if snapshot_task is not None:
            snapshot_stop.set()
            await snapshot_task
        if http is not None:
            await http.close()
        if crm is not None:
            await crm.close()
        await redis.aclose()
        await engine.dispose()
