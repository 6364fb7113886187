"""`GET /webhook` (Meta's subscription handshake) and `POST /webhook` (Meta's events).

The POST handler does the least that makes the body safe to acknowledge: size limit, signature,
UTF-8 and JSON, normalisation into typed events, and one atomic de-duplicating XADD. It answers 200
only after that, and 503 when Redis cannot take it, so Meta retries instead of losing the event.
No flow runs inside the request; the one thing done at once is telling the send guard which of
our messages Meta reported (`bot.send_guard.record_outcomes`), since it cannot wait for the worker.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from datetime import UTC, datetime

from aiohttp import web
from redis.exceptions import RedisError

from bot.appkeys import SERVICES, SETTINGS
from bot.normaliser import FOREIGN_NUMBER, NotAnEnvelope, normalise
from bot.send_guard import record_outcomes
from bot.signature import SIGNATURE_HEADER, SignatureCheck, check_signature
from flows.events import Unknown

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def verify_subscription(request: web.Request) -> web.Response:
    """Answer Meta's handshake with the challenge when the verify token matches, else 403."""
    expected = request.app[SETTINGS].verify_token
    query = request.query
    token = query.get("hub.verify_token", "")
    if (
        expected is not None
        and query.get("hub.mode") == "subscribe"
        and hmac.compare_digest(token.encode(), expected.encode())
        and "hub.challenge" in query
    ):
        return web.Response(text=query["hub.challenge"], content_type="text/plain")
    return web.Response(status=403, text="verification failed", content_type="text/plain")


async def _read_limited(request: web.Request) -> bytes | None:
    """The body, or None when it is larger than `MAX_BODY_BYTES` (read no further than that)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_events(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[SETTINGS]
    metrics = services.metrics
    started = time.perf_counter()

    def refuse(result: str, status: int, message: str) -> web.Response:
        metrics.webhook_requests.labels(result=result).inc()
        return _error(status, message)

    body = await _read_limited(request)
    if body is None:
        return refuse("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
    if settings.app_secret is not None:
        check = check_signature(settings.app_secret, body, request.headers.get(SIGNATURE_HEADER))
        if check is SignatureCheck.MISSING:
            return refuse("unauthorized", 401, f"missing {SIGNATURE_HEADER}")
        if check is SignatureCheck.INVALID:
            return refuse("forbidden", 403, f"wrong {SIGNATURE_HEADER}")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return refuse("bad_request", 400, "body is not UTF-8")
    except json.JSONDecodeError as exc:
        return refuse("bad_request", 400, f"body is not JSON: {exc.msg}")
    except ValueError:
        # valid JSON syntax that Python will not turn into a value: an integer of more digits
        # than `sys.get_int_max_str_digits()` allows
        return refuse("bad_request", 400, "body holds a number too long to read")
    except RecursionError:
        # arrays or objects nested deeper than the interpreter's recursion limit
        return refuse("bad_request", 400, "body is nested too deeply")
    try:
        events = normalise(payload, received_at=datetime.now(UTC), own_number=settings.own_number)
    except NotAnEnvelope as exc:
        return refuse("bad_request", 400, f"not a WhatsApp webhook envelope: {exc}")
    try:
        accepted = await services.inbound_queue.accept(events)
    except (RedisError, OSError) as exc:
        log.error("cannot accept webhook durably: %s", exc)
        return refuse("unavailable", 503, "cannot store the event now; retry")
    try:
        await record_outcomes(services.redis, events)
    except (RedisError, OSError) as exc:  # queued already: the worker records them as well
        log.warning("statuses not passed to the send guard early: %s", exc)
    for event in events:
        if isinstance(event, Unknown) and event.reason.startswith(FOREIGN_NUMBER):
            metrics.foreign_number_events.labels(field=event.field or "none").inc()
    result = "accepted" if accepted.queued or not accepted.duplicates else "duplicate"
    metrics.webhook_requests.labels(result=result).inc()
    metrics.webhook_latency.observe(time.perf_counter() - started)
    return web.json_response(
        {"status": "accepted", "events": accepted.queued, "duplicates": accepted.duplicates}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/webhook", verify_subscription)
    app.router.add_post("/webhook", receive_events)
