"""Templates the business sends: does each marketing template carry a way out?

`template_guard` builds the process's `TemplateGuard` from the settings (see
`bot.message_templates.catalog` for what it decides and from which list).
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from prometheus_client import Counter
from redis.asyncio import Redis

from bot import redis_keys
from bot.graph.templates import TemplateListClient
from bot.message_templates.catalog import (
    CachedTemplateIndex,
    TemplateGuard,
    TemplateInfo,
    TemplateRefused,
    TemplatesUnavailable,
    TemplateVerdict,
)
from bot.message_templates.sandbox import sandbox_index
from bot.settings import Settings
from flows.keywords import KeywordMatcher
from flows.locale_catalog import LocaleCatalog

__all__ = [
    "TemplateGuard",
    "TemplateInfo",
    "TemplateRefused",
    "TemplateVerdict",
    "TemplatesUnavailable",
    "template_guard",
]


def template_guard(
    settings: Settings,
    redis: Redis,
    catalogs: Mapping[str, LocaleCatalog],
    matcher: KeywordMatcher,
    session: aiohttp.ClientSession | None,
    *,
    unknown: Counter | None = None,
) -> TemplateGuard:
    """The sandbox's list in sandbox mode; Meta's (through `session`) with a token and
    `WHATSAPP_BUSINESS_ACCOUNT_ID`; no list (everything unchecked, with the warning) else."""
    if settings.sandbox:
        return TemplateGuard(sandbox_index(settings, catalogs, matcher), unknown=unknown)
    waba_id = settings.business_account_id
    if waba_id is None or session is None or settings.access_token is None:
        return TemplateGuard(None, unknown=unknown)
    client = TemplateListClient(
        session,
        base_url=settings.graph_api_url,
        waba_id=waba_id,
        access_token=settings.access_token,
    )
    index = CachedTemplateIndex(
        redis,
        redis_keys.TEMPLATE_LIST.format(waba_id=waba_id),
        client.fetch_all,
        matcher,
        description=f"WhatsApp Business Account {waba_id}",
    )
    return TemplateGuard(index, unknown=unknown)
