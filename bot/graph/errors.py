"""Typed errors for the WhatsApp Cloud API, keyed by Meta's numeric error codes.

Meta recommends building error handling on the numeric `code` (and `error_data.details`), not on
titles, which it plans to deprecate. Each code that changes what the bot must do next gets its own
class: a consent bot must tell "the customer stopped marketing" (131050: record it, never retry)
from "we are sending too fast" (130429: wait and retry) from "the 24-hour window is closed"
(131047: only a template may go out). `error_for` picks the class; `retryable` tells the client
whether another attempt can succeed without changing the request.

Meanings are from Meta's Cloud API error-code reference
(developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
"""

from __future__ import annotations

from typing import ClassVar


class GraphError(Exception):
    """A request to the Graph API did not produce a sent message.

    Carries Meta's error body as parsed: `code` (None when there was no Meta error body, e.g. a
    transport failure), `message`, `details` (`error_data.details`), `error_subcode`, `error_type`,
    `fbtrace_id` (quote it to Meta support), the HTTP status, `retry_after` (seconds, from a
    `Retry-After` header) and `retryable`: whether repeating the same request later can succeed.
    """

    codes: ClassVar[tuple[int, ...]] = ()
    default_retryable: ClassVar[bool] = False
    #: Shortest sensible wait before a retry, in seconds (Meta's guidance for some limits).
    min_retry_delay: ClassVar[float] = 0.0
    #: Whether Meta may have accepted the message despite the error (no clean answer came back).
    #: False means the message certainly did not go out: repeating it cannot send it twice.
    may_have_been_sent: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        title: str | None = None,
        details: str | None = None,
        error_subcode: int | None = None,
        error_type: str | None = None,
        fbtrace_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        if title is None:
            title = META_TITLES.get(code, message) if code is not None else message
        self.title = title
        self.details = details
        self.error_subcode = error_subcode
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.details:
            parts.append(f"details={self.details!r}")
        if self.fbtrace_id:
            parts.append(f"fbtrace_id={self.fbtrace_id}")
        return " ".join(parts)


class NetworkError(GraphError):
    """No answer from Meta: the connection failed, broke, or timed out. Retryable.

    Whether Meta may have received the message is what matters, and the two subclasses say it:
    `NotSentError` (the request certainly never reached the server) and `MaybeSentError` (it may
    have, and Meta may have accepted the message). The client raises only those two.
    """

    default_retryable = True


class NotSentError(NetworkError):
    """The request never left: connection refused, DNS failure, TLS handshake failure, or no
    connection within the connect timeout.

    Nothing was written to the server, so repeating the request cannot send the message twice;
    the client retries it itself.
    """


class MaybeSentError(NetworkError):
    """The request may have reached Meta, but no usable answer came back: a timeout after the
    request was written, the server disconnecting or resetting the connection mid-exchange, a
    truncated response, or a 5xx without Meta's error body (a proxy or gateway in between gave
    up, perhaps after Meta accepted the message).

    Retryable, but never blindly: the Cloud API has no idempotency key, so a repeat can message
    the person twice. The client raises it at once, and the caller decides by its own message id
    whether the message went out (`bot.send_guard`).
    """

    may_have_been_sent = True


class UnexpectedResponseError(GraphError):
    """Meta answered with a success status but no `messages[0].id` (or a body that is not JSON).

    Never treated as a success: without a wamid nothing can be tracked. Not retried either, because
    a 2xx means Meta may have accepted the message and a retry could send it twice.
    """

    may_have_been_sent = True


class AuthError(GraphError):
    """0 AuthException / 190 Access token has expired / 3, 10, 200-299 permission errors.

    The token is missing, expired or invalidated, or lacks the permission for this number.
    Permanent until an operator replaces the token: retrying cannot help.
    """

    codes = (0, 3, 10, 190, *range(200, 300))


class InvalidParameterError(GraphError):
    """100 Invalid parameter / 131008 Required parameter is missing / 131009 Parameter value is
    not valid.

    The request itself is wrong (misspelled or unsupported field, missing field, bad value, or a
    recipient that is not a WhatsApp number). Permanent: fix the request.
    """

    codes = (100, 131008, 131009)


class TransientGraphError(GraphError):
    """1 API Unknown / 2 API Service / 131000 Something went wrong / 131016 Service unavailable /
    131057 Account in maintenance mode.

    A temporary fault or downtime on Meta's side. Retryable with backoff.
    """

    codes = (1, 2, 131000, 131016, 131057)
    default_retryable = True


class RateLimitError(GraphError):
    """4 API Too Many Calls / 80007 Rate limit issues (WhatsApp Business Account rate limit).

    The app or account made too many API calls. Retryable after backing off.
    """

    codes: ClassVar[tuple[int, ...]] = (4, 80007)
    default_retryable = True


class ThroughputLimitError(RateLimitError):
    """130429 Rate limit hit: the number's Cloud API message throughput has been reached.

    Meta allows 80 messages per second per number by default (up to 1,000 after an upgrade).
    Retryable: slow down and try again.
    """

    codes = (130429,)


class PairRateLimitError(RateLimitError):
    """131056 (Business Account, Consumer Account) pair rate limit hit.

    Too many messages from this business number to the same customer in a short time (Meta's
    pair rate is about one message every 6 seconds). Retryable, but only after a delay.
    """

    codes = (131056,)
    min_retry_delay = 6.0


class SpamRateLimitError(GraphError):
    """131048 Spam rate limit hit.

    Messages from this number were restricted because too many previous messages were blocked or
    flagged as spam. Not retryable: the number's quality must recover first.
    """

    codes = (131048,)


class DeliveryError(GraphError):
    """Meta accepted the request but will not deliver this message to this recipient.

    Base class of the per-recipient refusals below; none is retryable as is.
    """


class OutsideWindowError(DeliveryError):
    """131047 Re-engagement message.

    More than 24 hours have passed since the customer last wrote to this number, so the
    customer-service window is closed: only an approved template message may be sent now.
    """

    codes = (131047,)


class UserStoppedMarketingError(DeliveryError):
    """131050 Unable to deliver the message: this recipient has chosen to stop receiving
    marketing messages on WhatsApp from your business.

    A consent fact, enforced by Meta: record it and never retry marketing to this customer until
    they opt back in.
    """

    codes = (131050,)


class UndeliverableError(DeliveryError):
    """131026 Message Undeliverable.

    The recipient's number is not on WhatsApp, the recipient has not accepted the current Terms of
    Service, uses a WhatsApp version too old for this message, or has blocked the business.
    """

    codes = (131026,)


class MarketingLimitError(DeliveryError):
    """131049 This message was not delivered to maintain healthy ecosystem engagement.

    WhatsApp's per-user marketing template limit: the customer has received enough marketing
    messages (from all businesses) for now. Not retryable now; Meta advises retrying only in
    increasingly long intervals (hours to days), which is the scheduler's job, not the client's.
    """

    codes = (131049,)


class UnsupportedMessageTypeError(DeliveryError):
    """131051 Unsupported message type: this message type cannot be sent (to this recipient)."""

    codes = (131051,)


class UnsupportedRecipientError(DeliveryError):
    """131062 Business-scoped user ID recipients are not supported for this message.

    Some messages (e.g. one-tap, zero-tap and copy-code authentication templates) still need a
    phone number; they cannot be addressed to a BSUID.
    """

    codes = (131062,)


class TemplateError(GraphError):
    """132000-132016 template errors.

    132000 parameter count mismatch, 132001 template does not exist (in this language),
    132005 hydrated text too long, 132007 format character policy violated, 132012 parameter
    format mismatch, 132015 template paused, 132016 template disabled. Permanent for this request.
    """

    codes = tuple(range(132000, 132017))


#: Meta's titles for the codes the bot handles (for logs; Meta says not to branch on them).
META_TITLES: dict[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    3: "API Method",
    4: "API Too Many Calls",
    10: "Permission Denied",
    100: "Invalid parameter",
    190: "Access token has expired",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131026: "Message Undeliverable",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "Meta chose not to deliver",
    131050: "User stopped marketing messages",
    131051: "Unsupported message type",
    131056: "Pair rate limit hit",
    131057: "Account in maintenance mode",
    131062: "Business-scoped user ID recipients not supported",
    132000: "Template Param Count Mismatch",
    132001: "Template does not exist",
    132005: "Template Hydrated Text Too Long",
    132007: "Template Format Character Policy Violated",
    132012: "Template Parameter Format Mismatch",
    132015: "Template is Paused",
    132016: "Template is Disabled",
}

_CLASSES_WITH_CODES: tuple[type[GraphError], ...] = (
    AuthError,
    InvalidParameterError,
    TransientGraphError,
    RateLimitError,
    ThroughputLimitError,
    PairRateLimitError,
    SpamRateLimitError,
    OutsideWindowError,
    UserStoppedMarketingError,
    UndeliverableError,
    MarketingLimitError,
    UnsupportedMessageTypeError,
    UnsupportedRecipientError,
    TemplateError,
)

#: Meta error code -> the class raised for it.
ERROR_CLASSES: dict[int, type[GraphError]] = {
    code: cls for cls in _CLASSES_WITH_CODES for code in cls.codes
}


def error_for(
    code: int | None,
    http_status: int | None,
    *,
    message: str | None = None,
    details: str | None = None,
    error_subcode: int | None = None,
    error_type: str | None = None,
    fbtrace_id: str | None = None,
    retry_after: float | None = None,
    is_transient: bool | None = None,
) -> GraphError:
    """The error for Meta's `code`, falling back on the HTTP status when the code is unknown.

    Unknown codes: 429 is a `RateLimitError`, 401/403 an `AuthError`, 5xx a `TransientGraphError`
    (all as their class says); anything else a plain, non-retryable `GraphError` unless Meta's body
    flagged it `is_transient`.
    """
    cls = ERROR_CLASSES.get(code) if code is not None else None
    retryable: bool | None = None
    if cls is None:
        if http_status == 429:
            cls = RateLimitError
        elif http_status in (401, 403):
            cls = AuthError
        elif http_status is not None and http_status >= 500:
            cls = TransientGraphError
        else:
            cls = GraphError
            retryable = bool(is_transient)
    if message is None:
        message = META_TITLES.get(code if code is not None else -1) or (
            f"Graph API error (HTTP {http_status})" if http_status else "Graph API error"
        )
    return cls(
        message,
        code=code,
        http_status=http_status,
        details=details,
        error_subcode=error_subcode,
        error_type=error_type,
        fbtrace_id=fbtrace_id,
        retry_after=retry_after,
        retryable=retryable,
    )


def error_from_body(
    http_status: int, body: object, *, retry_after: float | None = None
) -> GraphError:
    """Parse Meta's error body `{"error": {"message", "type", "code", "error_subcode",
    "error_data": {"details"}, "fbtrace_id"}}` into the matching `GraphError`.

    Tolerates missing or malformed parts: whatever cannot be read is left None and the class then
    follows from the HTTP status alone.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return error_for(None, http_status, retry_after=retry_after)
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    transient = error.get("is_transient")
    return error_for(
        _as_int(error.get("code")),
        http_status,
        message=_as_str(error.get("message")),
        details=_as_str(details),
        error_subcode=_as_int(error.get("error_subcode")),
        error_type=_as_str(error.get("type")),
        fbtrace_id=_as_str(error.get("fbtrace_id")),
        retry_after=retry_after,
        is_transient=transient if isinstance(transient, bool) else None,
    )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
