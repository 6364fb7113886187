"""CRM sync as one piece for the composition root: the HTTP session, the outbox, the hooks and
the deliverer, built only when `BUSINESS_WEBHOOK_URL` is set.

The HTTP session is pooled and shared by every shard of the deliverer; it is opened here and
closed by `close()` when the services close.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from bot.crm.announce import CrmAnnouncer
from bot.crm.attempt import USER_AGENT, RetryPolicy
from bot.crm.deliverer import CrmDeliverer
from bot.crm.log import DeliveryLog
from bot.crm.outbox import CrmOutbox
from bot.db.ledger import LedgerRepository
from bot.hooks import Hooks
from bot.metrics import Metrics
from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class CrmSync:
    """Everything CRM sync needs in one process; `deliverer` is started by the sender role."""

    url: str
    secret: str
    redis: Redis
    http: aiohttp.ClientSession
    outbox: CrmOutbox
    announcer: CrmAnnouncer

    def register(self, hooks: Hooks) -> None:
        hooks.consent_changed.append(self.announcer.consent_changed)
        hooks.unhandled_message.append(self.announcer.unhandled_message)
        hooks.contact_erased.append(self.forget_contact)

    async def forget_contact(self, contact_id: int) -> None:
        """An erased contact's identifiers leave the delivery log (the events already queued
        still go out: the CRM is told of the erasure by the consent changes it made)."""
        await DeliveryLog(self.redis).scrub_contact(contact_id)

    def deliverer(
        self, *, consumer: str, metrics: Metrics | None, policy: RetryPolicy | None = None
    ) -> CrmDeliverer:
        return CrmDeliverer(
            self.redis,
            self.http,
            url=self.url,
            secret=self.secret,
            consumer=consumer,
            metrics=metrics,
            policy=policy,
        )

    async def close(self) -> None:
        await self.http.close()


def open_crm_sync(settings: Settings, redis: Redis, ledger: LedgerRepository) -> CrmSync | None:
    """CRM sync for `settings`, or None when no `BUSINESS_WEBHOOK_URL` is configured."""
    url, secret = settings.business_webhook_url, settings.business_webhook_secret
    if url is None or secret is None:
        return None
    outbox = CrmOutbox(redis)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=32, ttl_dns_cache=300),
        timeout=RetryPolicy().timeout(),
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
    )
    return CrmSync(
        url=url,
        secret=secret,
        redis=redis,
        http=http,
        outbox=outbox,
        announcer=CrmAnnouncer(outbox, ledger, phone_number_id=settings.phone_number_id),
    )
