"""CRM sync: consent changes and unhandled inbound messages, POSTed to the business's webhook.

`BUSINESS_WEBHOOK_URL` receives each event as signed JSON (`events`), queued durably on Redis
Streams sharded by contact (`outbox`), delivered in order per contact and retried with backoff
for up to 48 hours across processes and restarts (`deliverer`, `attempt`), with a delivery log
the API reads (`log`, `bot.api.crm`).
"""

from __future__ import annotations

from bot.crm.sync import CrmSync, open_crm_sync

__all__ = ["CrmSync", "open_crm_sync"]
