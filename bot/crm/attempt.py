"""One delivery attempt to the business's webhook, and what its answer means.

The body is POSTed exactly as queued and signed like Meta signs its own webhooks:
`X-Optin-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with
BUSINESS_WEBHOOK_SECRET>`, with the event id (`X-Optin-Event-Id`) for idempotency and the attempt
number (`X-Optin-Delivery-Attempt`). The answer decides what happens next:

- 2xx: delivered.
- 410 Gone: the receiver says the endpoint is gone: the event is given up and delivery pauses.
- 408, 429, 5xx, any other status, timeouts and connection errors: retried with backoff,
  honouring `Retry-After`.
- any other 4xx: the receiver refuses this event: it is given up, the next one follows.

Redirects are not followed: a webhook URL that moved is a configuration to fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from importlib import metadata
from typing import Final

import aiohttp

from bot.signature import sign

SIGNATURE_HEADER: Final = "X-Optin-Signature-256"
EVENT_ID_HEADER: Final = "X-Optin-Event-Id"
ATTEMPT_HEADER: Final = "X-Optin-Delivery-Attempt"
_ERROR_BODY_BYTES: Final = 300


def _version() -> str:
    try:
        return metadata.version("optin-bot")
    except metadata.PackageNotFoundError:
        return "0"


USER_AGENT: Final = f"optin-bot/{_version()}"


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST came to: the verdict, the status code (None without an answer), a short
    description of the failure, and the receiver's `Retry-After` in seconds."""

    verdict: Verdict
    status_code: int | None
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a failing event is retried.

    Delays grow exponentially from `base_delay` to `max_delay` with full jitter (so receivers
    coming back are not hit by every queued event at once); a `Retry-After` from the receiver is
    the least that is waited. An event is given up once it has waited `give_up_after` seconds
    since it was queued, after one last attempt at that moment.
    """

    base_delay: float = 1.0
    max_delay: float = 600.0
    give_up_after: float = 48 * 3600.0
    request_timeout: float = 10.0
    connect_timeout: float = 5.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 40))
        jittered = rng.uniform(0, ceiling)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.give_up_after))
        return jittered

    def timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.request_timeout, connect=self.connect_timeout)


def classify(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    if 400 <= status < 500 and status not in (408, 429):
        return Verdict.REJECTED
    return Verdict.RETRY


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def signed_headers(secret: str, event_id: str, body: bytes, attempt: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_ID_HEADER: event_id,
        ATTEMPT_HEADER: str(attempt),
    }


async def post_event(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    *,
    event_id: str,
    body: bytes,
    attempt: int,
    client_timeout: aiohttp.ClientTimeout,
    now: float,
) -> AttemptResult:
    """POST one event; never raises for anything the receiver or the network does."""
    try:
        async with session.post(
            url,
            data=body,
            headers=signed_headers(secret, event_id, body, attempt),
            timeout=client_timeout,
            allow_redirects=False,
        ) as response:
            verdict = classify(response.status)
            error = None
            if verdict is not Verdict.DELIVERED:
                text = (await response.content.read(_ERROR_BODY_BYTES)).decode("utf-8", "replace")
                error = f"HTTP {response.status}: {text}".strip()
            return AttemptResult(
                verdict,
                response.status,
                error,
                parse_retry_after(response.headers.get("Retry-After"), now),
            )
    except TimeoutError:
        return AttemptResult(Verdict.RETRY, None, f"no answer within {client_timeout.total:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return AttemptResult(Verdict.RETRY, None, f"{type(exc).__name__}: {exc}")
