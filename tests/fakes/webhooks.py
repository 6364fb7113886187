"""Meta-shaped webhook bodies, Meta's signature, and a polling helper for the tests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from bot.signature import SIGNATURE_HEADER, sign

APP_SECRET = "test-app-secret"


_last_stamps: dict[str, int] = {}


def meta_timestamp(customer: str) -> int:
    """A Meta timestamp (one-second resolution) for `customer`'s next message: each at least a
    second after their previous one, because a customer's STOP and START within one second
    cannot be ordered and the service resolves them to the STOP (`flows.consent_order`), while a
    test's messages are meant in the order it sends them. The first is stamped 30 seconds ago,
    so that a quick run of messages stays in the past (before our replies, as on WhatsApp).

    The order is per test (`forget_timestamps`, run before each): across a whole run the same
    test number sends far more than one message a second, and stamps carried over would run
    ahead of the clock until the service clamps them to one instant (found in CI: a toggle back
    on was read as simultaneous with the STOP before it).
    """
    now = int(time.time())
    stamp = max(now - 30, _last_stamps.get(customer, 0) + 1)
    _last_stamps[customer] = stamp
    return stamp


def forget_timestamps() -> None:
    """Start every customer's timestamps afresh (each test has its own database)."""
    _last_stamps.clear()


def text_webhook(
    *,
    wa_id: str = "15551234567",
    text: str = "hello",
    wamid: str | None = None,
    timestamp: int | None = None,
    name: str = "Ana",
    phone_number_id: str = "106540352242922",
) -> dict[str, Any]:
    """One inbound text message, shaped like Meta's `messages` webhook."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid or f"wamid.{uuid.uuid4().hex}",
                                    "timestamp": str(timestamp or meta_timestamp(wa_id)),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def status_webhook(
    *,
    wamid: str,
    status: str,
    recipient: str = "15551234567",
    timestamp: int = 1_760_000_100,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient,
    }
    if errors:
        item["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "statuses": [item],
                        },
                    }
                ],
            }
        ],
    }


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"}


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


async def eventually(check: Any, *, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async `check()` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(interval)
