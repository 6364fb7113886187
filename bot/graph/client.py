"""Async client for sending WhatsApp messages through Meta's Cloud API.

One `CloudApiClient` wraps one pooled `aiohttp.ClientSession` that the composition root creates
and closes: connection reuse matters at Meta's 80+ messages per second, and tests can point the
client at a local fake server through `base_url`.

Failures are typed (`bot.graph.errors`). The Cloud API has no idempotency key, so a retry is only
safe when Meta certainly did not accept the message. Those failures are retried a bounded number
of times with full-jitter exponential backoff, honouring `Retry-After`: Meta's own error answers
that are temporary (HTTP 429 and 5xx with Meta's error body, the throughput and transient codes)
and connections that never got the request out (`NotSentError`). A failure after the request may
have reached Meta (a timeout, a reset or disconnect mid-exchange, a truncated answer, a gateway's
5xx without Meta's body) is raised at once as `MaybeSentError`: retryable, but the caller must
first find out, by its own message id, whether the message went out (`bot.send_guard`).
Permanent errors (a closed 24-hour window, a marketing opt-out, an invalid request, a bad token)
are raised at once, because repeating them cannot succeed and some of them are consent facts the
caller must record. A 200 without a message id is an error, never a success, and never retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from bot.graph.errors import (
    GraphError,
    MaybeSentError,
    NotSentError,
    UnexpectedResponseError,
    error_from_body,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=15.0, sock_connect=5.0)

Sleep = Callable[[float], Awaitable[None]]
Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What Meta answered for an accepted message.

    `wamid` identifies the message in later status webhooks. `wa_id` / `user_id` are the
    recipient's ids as Meta echoes them in `contacts[0]` (`user_id` when addressed by BSUID),
    `recipient_input` what we sent as the address, `message_status` Meta's `messages[0]`
    status when present (e.g. "accepted" for paced template messages).
    """

    wamid: str
    wa_id: str | None = None
    user_id: str | None = None
    recipient_input: str | None = None
    message_status: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: attempts in total (first one included) and the backoff shape.

    The n-th retry waits a uniformly random time in [0, min(max_delay, base_delay * 2**(n-1))]
    ("full jitter", so many senders backing off at once do not retry in lockstep), but at least
    the error's own minimum (e.g. Meta's pair rate). A `Retry-After` header is obeyed exactly; one
    longer than `max_retry_after` ends the attempts and the error (with `retry_after` set) is
    raised for the caller to reschedule.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, retry_number: int, rand: Random) -> float:
        """The full-jitter delay before retry number `retry_number` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return rand() * ceiling


class CloudApiClient:
    """Sends message bodies (see `bot.graph.builders`) to `{base_url}/{phone_number_id}/messages`.

    `sleep` and `rand` are injectable so tests can observe the backoff without waiting.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        phone_number_id: str,
        access_token: str,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Random = random.random,
    ) -> None:
        self._session = session
        self._messages_url = f"{base_url.rstrip('/')}/{phone_number_id}/messages"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
        }
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._rand = rand

    @property
    def messages_url(self) -> str:
        """The endpoint messages are POSTed to."""
        return self._messages_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    async def send_message(self, body: Mapping[str, Any]) -> SentMessage:
        """POST one message; return Meta's acknowledgement or raise a `GraphError`.

        Retries retryable errors that prove the message was not sent, up to
        `RetryPolicy.max_attempts` attempts in total, then raises the last error. A
        `MaybeSentError` is raised at once: only the caller can tell whether repeating it
        would message the person twice.
        """
        payload = json.dumps(dict(body), ensure_ascii=False, separators=(",", ":")).encode()
        attempt = 1
        while True:
            try:
                return await self._post_once(payload)
            except GraphError as error:
                delay = self._delay_before_retry(attempt, error)
                if delay is None:
                    raise
                log.warning(
                    "graph send attempt %d/%d failed (%s); retrying in %.3fs",
                    attempt,
                    self._retry.max_attempts,
                    error,
                    delay,
                )
                await self._sleep(delay)
                attempt += 1

    def _delay_before_retry(self, attempt: int, error: GraphError) -> float | None:
        """Seconds to wait before the next attempt, or None when no retry should happen."""
        if not error.retryable or error.may_have_been_sent or attempt >= self._retry.max_attempts:
            return None
        if error.retry_after is not None:
            if error.retry_after > self._retry.max_retry_after:
                return None
            return max(error.retry_after, error.min_retry_delay)
        return max(self._retry.backoff(attempt, self._rand), error.min_retry_delay)

    async def _post_once(self, payload: bytes) -> SentMessage:
        try:
            async with self._session.post(
                self._messages_url,
                data=payload,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Raised before a byte of the request is written (aiohttp does not retry POSTs).
            raise NotSentError(f"could not connect to the Graph API: {exc!r}") from exc
        except TimeoutError as exc:
            raise MaybeSentError(
                f"no answer from the Graph API in time; the message may have been sent ({exc!r})"
            ) from exc
        except aiohttp.ClientError as exc:
            raise MaybeSentError(
                f"the connection to the Graph API broke; the message may have been sent ({exc!r})"
            ) from exc
        try:
            parsed: object = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if 200 <= status < 300 and not (isinstance(parsed, dict) and "error" in parsed):
            return _sent_message(status, parsed)
        if status >= 500 and not (
            isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)
        ):
            raise MaybeSentError(
                f"HTTP {status} without Meta's error body (a proxy or gateway gave up?); "
                "the message may have been sent",
                http_status=status,
                details=_excerpt(
                    parsed if parsed is not None else raw[:300].decode("utf-8", "replace")
                ),
                retry_after=retry_after,
            )
        raise error_from_body(status, parsed, retry_after=retry_after)


def _sent_message(status: int, body: object) -> SentMessage:
    """Read Meta's success body; anything without `messages[0].id` is an error."""
    reply: dict[str, Any] = body if isinstance(body, dict) else {}
    first = _first_object(reply.get("messages"))
    wamid = first.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise UnexpectedResponseError(
            "the Graph API answered without messages[0].id; the message cannot be tracked",
            http_status=status,
            details=_excerpt(body),
        )
    contact = _first_object(reply.get("contacts"))
    return SentMessage(
        wamid=wamid,
        wa_id=_str_or_none(contact.get("wa_id")),
        user_id=_str_or_none(contact.get("user_id")),
        recipient_input=_str_or_none(contact.get("input")),
        message_status=_str_or_none(first.get("message_status")),
    )


def _first_object(items: object) -> dict[str, Any]:
    """The first element of a JSON array when it is an object, else an empty dict."""
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return {}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date), else None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _excerpt(body: object, limit: int = 300) -> str:
    text = json.dumps(body, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
