"""CloudApiClient against the recording fake Graph server: success, typed failures, retries."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, cast
from unittest.mock import MagicMock

import aiohttp
import pytest

from bot.graph import (
    ERROR_CLASSES,
    AuthError,
    CloudApiClient,
    GraphError,
    InvalidParameterError,
    MarketingLimitError,
    MaybeSentError,
    NetworkError,
    NotSentError,
    OutsideWindowError,
    PairRateLimitError,
    RateLimitError,
    Recipient,
    RetryPolicy,
    SentMessage,
    TemplateError,
    ThroughputLimitError,
    TransientGraphError,
    UndeliverableError,
    UnexpectedResponseError,
    UnsupportedMessageTypeError,
    UserStoppedMarketingError,
    error_for,
    error_from_body,
    parse_retry_after,
    template_message,
    text_message,
)
from tests.bot.graph.conftest import ACCESS_TOKEN, PHONE_NUMBER_ID, ClientFactory
from tests.fakes.graph import FakeGraph, RecordingSleep, ScriptedResponse

WA_ID = "15551234567"
BSUID = "US.13491208655302741918"


async def test_success_returns_wamid_and_echoed_recipient(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    sent = await make_client().send_message(text_message(WA_ID, "hello"))

    assert sent.wamid == graph.accepted[0].wamid
    assert sent.wamid.startswith("wamid.")
    assert (sent.wa_id, sent.user_id, sent.recipient_input) == (WA_ID, None, WA_ID)
    assert sent.message_status is None
    assert len(graph.requests) == 1
    assert sleep.delays == []


async def test_request_carries_bearer_token_json_and_path(
    graph: FakeGraph, make_client: ClientFactory
) -> None:
    body = text_message(WA_ID, "hello")
    await make_client().send_message(body)

    request = graph.requests[0]
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.path == f"/v25.0/{PHONE_NUMBER_ID}/messages"
    assert request.phone_number_id == PHONE_NUMBER_ID
    assert request.json == body


async def test_messages_url_joins_base_url_and_number(session: aiohttp.ClientSession) -> None:
    client = CloudApiClient(
        session,
        base_url="https://graph.facebook.com/v25.0/",
        phone_number_id="123",
        access_token="t",
    )
    assert client.messages_url == "https://graph.facebook.com/v25.0/123/messages"


async def test_bsuid_recipient_is_echoed_as_user_id(make_client: ClientFactory) -> None:
    sent = await make_client().send_message(text_message(Recipient(user_id=BSUID), "hi"))
    assert (sent.wa_id, sent.user_id, sent.recipient_input) == (None, BSUID, BSUID)


async def test_template_reports_message_status(make_client: ClientFactory) -> None:
    sent = await make_client().send_message(template_message(WA_ID, "hello_world", "en_US"))
    assert sent.message_status == "accepted"


async def test_server_errors_are_retried_with_growing_backoff(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(2, status=500)
    client = make_client(retry=RetryPolicy(base_delay=0.5), rand=lambda: 1.0)

    sent = await client.send_message(text_message(WA_ID, "hello"))

    assert sent.wamid == graph.accepted[0].wamid
    assert [r.action for r in graph.requests] == ["failed", "failed", "accepted"]
    assert sleep.delays == [0.5, 1.0]  # the ceiling doubles per retry


async def test_backoff_is_full_jitter_within_bounds(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(4, status=503)
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0)
    client = make_client(retry=policy, rand=random.Random(20240601).random)

    await client.send_message(text_message(WA_ID, "hello"))

    assert len(sleep.delays) == 4
    ceilings = [1.0, 2.0, 4.0, 8.0]
    for delay, ceiling in zip(sleep.delays, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling
    assert sleep.delays != ceilings  # jittered, not the bare exponential


def test_backoff_ceiling_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert [policy.backoff(n, lambda: 1.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(3, lambda: 0.25) == 1.0


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_delay=-1.0)


async def test_gives_up_after_max_attempts_with_the_last_error(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(10, status=500)
    client = make_client(retry=RetryPolicy(max_attempts=3))

    with pytest.raises(TransientGraphError) as caught:
        await client.send_message(text_message(WA_ID, "hello"))

    assert caught.value.code == 131000
    assert caught.value.http_status == 500
    assert len(graph.requests) == 3
    assert len(sleep.delays) == 2


async def test_429_retry_after_is_honoured(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(1, status=429, retry_after=7)

    await make_client(rand=lambda: 1.0).send_message(text_message(WA_ID, "hello"))

    assert sleep.delays == [7.0]
    assert len(graph.requests) == 2


async def test_retry_after_beyond_the_policy_is_raised_for_rescheduling(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(1, status=429, retry_after=3600)
    client = make_client(retry=RetryPolicy(max_retry_after=60.0))

    with pytest.raises(ThroughputLimitError) as caught:
        await client.send_message(text_message(WA_ID, "hello"))

    assert caught.value.retry_after == 3600.0
    assert caught.value.retryable
    assert len(graph.requests) == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (131047, OutsideWindowError),
        (131050, UserStoppedMarketingError),
        (131026, UndeliverableError),
        (131049, MarketingLimitError),
        (131051, UnsupportedMessageTypeError),
        (131009, InvalidParameterError),
        (132001, TemplateError),
    ],
)
async def test_permanent_errors_raise_their_class_without_retry(
    graph: FakeGraph,
    make_client: ClientFactory,
    sleep: RecordingSleep,
    code: int,
    error_class: type[GraphError],
) -> None:
    graph.fail_next(1, status=400, code=code, details="Meta's explanation")

    with pytest.raises(error_class) as caught:
        await make_client().send_message(text_message(WA_ID, "hello"))

    error = caught.value
    assert type(error) is error_class
    assert (error.code, error.http_status, error.retryable) == (code, 400, False)
    assert error.details == "Meta's explanation"
    assert error.fbtrace_id
    assert len(graph.requests) == 1
    assert sleep.delays == []


@pytest.mark.parametrize("status", [400, 429])
async def test_throughput_limit_is_retried(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep, status: int
) -> None:
    graph.fail_next(1, status=status, code=130429)

    sent = await make_client().send_message(text_message(WA_ID, "hello"))

    assert sent.wamid
    assert len(graph.requests) == 2
    assert len(sleep.delays) == 1


async def test_pair_rate_limit_waits_at_least_meta_s_pair_interval(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(1, status=400, code=131056)

    await make_client(rand=lambda: 0.0).send_message(text_message(WA_ID, "hello"))

    assert sleep.delays == [PairRateLimitError.min_retry_delay]
    assert len(graph.requests) == 2


async def test_timeout_after_sending_is_raised_at_once_as_maybe_sent(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    """Regression: a timeout used to be retried inside the client, re-POSTing a message Meta
    may already have accepted (the fake did accept it) - a duplicate no caller could stop."""
    graph.stall_next(1, seconds=10.0)
    client = make_client(timeout=aiohttp.ClientTimeout(total=0.3))

    with pytest.raises(MaybeSentError, match="in time") as caught:
        await client.send_message(text_message(WA_ID, "hello"))

    assert isinstance(caught.value, NetworkError)
    assert caught.value.retryable and caught.value.may_have_been_sent
    assert caught.value.code is None
    assert len(graph.requests) == 1
    assert len(graph.accepted) == 1  # Meta's side took it: a blind retry would send it twice
    assert sleep.delays == []


async def test_connection_reset_mid_request_is_raised_at_once_as_maybe_sent(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    """A reset after the request was written leaves its fate unknown: no blind retry."""
    graph.reset_next(3)
    client = make_client(retry=RetryPolicy(max_attempts=3))

    with pytest.raises(MaybeSentError) as caught:
        await client.send_message(text_message(WA_ID, "hello"))

    assert caught.value.retryable
    assert [r.action for r in graph.requests] == ["reset"]
    assert sleep.delays == []


async def test_5xx_without_meta_s_error_body_is_maybe_sent_not_retried(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    """A gateway's 502/504 (no Meta error body) may come after Meta accepted the message."""
    graph.respond_with(lambda _request: ScriptedResponse(504, None))

    with pytest.raises(MaybeSentError) as caught:
        await make_client().send_message(text_message(WA_ID, "hello"))

    assert caught.value.http_status == 504
    assert caught.value.retryable
    assert len(graph.requests) == 1
    assert sleep.delays == []


async def test_connection_refused_is_not_sent_and_retried(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    """Nothing reached a server, so the client may retry it blindly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    client = CloudApiClient(
        session,
        base_url=f"http://127.0.0.1:{free_port}/v25.0",
        phone_number_id=PHONE_NUMBER_ID,
        access_token=ACCESS_TOKEN,
        retry=RetryPolicy(max_attempts=2),
        sleep=sleep,
    )
    with pytest.raises(NotSentError) as caught:
        await client.send_message(text_message(WA_ID, "hello"))
    assert caught.value.retryable and not caught.value.may_have_been_sent
    assert len(sleep.delays) == 1


class _FailingSession:
    """A session whose `post` fails with a given aiohttp exception before any answer."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.posts = 0

    def post(self, *_args: Any, **_kwargs: Any) -> Any:
        self.posts += 1
        error = self.errors.pop(0)

        class _Failing:
            async def __aenter__(self) -> Any:
                raise error

            async def __aexit__(self, *_exc: object) -> None:
                return None

        return _Failing()


def _connector_error() -> aiohttp.ClientConnectorError:
    key = MagicMock()
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_connector_error(), NotSentError),
        (aiohttp.ConnectionTimeoutError("connect timeout"), NotSentError),
        (aiohttp.SocketTimeoutError("read timeout"), MaybeSentError),
        (TimeoutError(), MaybeSentError),
        (aiohttp.ServerDisconnectedError(), MaybeSentError),
        (aiohttp.ClientPayloadError("truncated"), MaybeSentError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), MaybeSentError),
    ],
)
async def test_transport_failures_say_whether_the_message_may_have_been_sent(
    sleep: RecordingSleep, error: BaseException, expected: type[NetworkError]
) -> None:
    """Only failures before the request was written are retried by the client itself."""
    session = _FailingSession(error, error, error)
    client = CloudApiClient(
        cast(aiohttp.ClientSession, session),
        base_url="http://graph.invalid/v25.0",
        phone_number_id=PHONE_NUMBER_ID,
        access_token=ACCESS_TOKEN,
        retry=RetryPolicy(max_attempts=3),
        sleep=sleep,
    )
    with pytest.raises(expected):
        await client.send_message(text_message(WA_ID, "hello"))
    assert session.posts == (3 if expected is NotSentError else 1)


@pytest.mark.parametrize(
    "body",
    [
        {"messaging_product": "whatsapp", "contacts": [{"input": WA_ID, "wa_id": WA_ID}]},
        {"messaging_product": "whatsapp", "messages": []},
        {"messaging_product": "whatsapp", "messages": [{"id": ""}]},
        {"messaging_product": "whatsapp", "messages": [{"message_status": "accepted"}]},
        "not an object",
        None,
    ],
)
async def test_200_without_message_id_is_an_error_never_retried(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep, body: object
) -> None:
    graph.respond_with(lambda _request: ScriptedResponse(200, body))

    with pytest.raises(UnexpectedResponseError) as caught:
        await make_client().send_message(text_message(WA_ID, "hello"))

    assert isinstance(caught.value, GraphError)
    assert caught.value.http_status == 200
    assert not caught.value.retryable
    assert len(graph.requests) == 1
    assert sleep.delays == []


async def test_error_body_inside_a_200_is_an_error(
    graph: FakeGraph, make_client: ClientFactory
) -> None:
    graph.respond_with(
        lambda _request: ScriptedResponse(200, {"error": {"code": 131047, "message": "late"}})
    )
    with pytest.raises(OutsideWindowError):
        await make_client().send_message(text_message(WA_ID, "hello"))


async def test_wrong_token_is_a_permanent_auth_error(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    async with FakeGraph(access_token="the-real-token") as graph:
        client = CloudApiClient(
            session,
            base_url=graph.base_url,
            phone_number_id=PHONE_NUMBER_ID,
            access_token="an-expired-token",
            sleep=sleep,
        )
        with pytest.raises(AuthError) as caught:
            await client.send_message(text_message(WA_ID, "hello"))

    assert (caught.value.code, caught.value.http_status) == (190, 401)
    assert not caught.value.retryable
    assert len(graph.requests) == 1


async def test_unknown_code_follows_the_http_status(
    graph: FakeGraph, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    graph.fail_next(1, status=503, code=999999)
    await make_client().send_message(text_message(WA_ID, "hello"))
    assert len(sleep.delays) == 1

    graph.fail_next(1, status=400, code=999999)
    with pytest.raises(GraphError) as caught:
        await make_client().send_message(text_message(WA_ID, "hello"))
    assert type(caught.value) is GraphError
    assert not caught.value.retryable


async def test_error_body_fields_are_parsed(graph: FakeGraph, make_client: ClientFactory) -> None:
    graph.fail_next(
        1,
        status=400,
        code=131050,
        message="(#131050) Unable to deliver the message",
        details="This recipient has chosen to stop receiving marketing messages",
        error_subcode=2494010,
    )
    with pytest.raises(UserStoppedMarketingError) as caught:
        await make_client().send_message(text_message(WA_ID, "hello"))

    error = caught.value
    assert error.message == "(#131050) Unable to deliver the message"
    assert error.details == "This recipient has chosen to stop receiving marketing messages"
    assert error.error_subcode == 2494010
    assert error.error_type == "OAuthException"
    assert error.title == "User stopped marketing messages"
    assert "131050" in str(error) and error.fbtrace_id is not None
    assert error.fbtrace_id in str(error)


def test_registry_maps_the_required_codes() -> None:
    expected: dict[int, type[GraphError]] = {
        131047: OutsideWindowError,
        131050: UserStoppedMarketingError,
        131026: UndeliverableError,
        130429: ThroughputLimitError,
        131049: MarketingLimitError,
        131056: PairRateLimitError,
        131051: UnsupportedMessageTypeError,
        190: AuthError,
        0: AuthError,
        100: InvalidParameterError,
        131008: InvalidParameterError,
        131009: InvalidParameterError,
        131000: TransientGraphError,
        131016: TransientGraphError,
        1: TransientGraphError,
        2: TransientGraphError,
        132000: TemplateError,
        132016: TemplateError,
    }
    for code, error_class in expected.items():
        assert ERROR_CLASSES[code] is error_class, code
        assert type(error_for(code, 400)) is error_class


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (130429, True),
        (131056, True),
        (131000, True),
        (131016, True),
        (1, True),
        (2, True),
        (131049, False),
        (131047, False),
        (131050, False),
        (190, False),
        (0, False),
        (100, False),
        (132001, False),
    ],
)
def test_retryability_by_code(code: int, retryable: bool) -> None:
    assert error_for(code, 400).retryable is retryable


def test_error_for_without_code_uses_http_status() -> None:
    assert type(error_for(None, 429)) is RateLimitError
    assert type(error_for(None, 502)) is TransientGraphError
    assert type(error_for(None, 401)) is AuthError
    plain = error_for(None, 404)
    assert type(plain) is GraphError and not plain.retryable
    assert error_for(None, 400, is_transient=True).retryable


def test_only_answers_that_may_hide_an_accepted_message_say_so() -> None:
    assert MaybeSentError("x").may_have_been_sent
    assert UnexpectedResponseError("x").may_have_been_sent
    assert not NotSentError("x").may_have_been_sent
    assert not error_for(131000, 500).may_have_been_sent
    assert not error_for(130429, 429).may_have_been_sent


def test_error_from_body_tolerates_garbage() -> None:
    assert type(error_from_body(500, "<html>oops</html>")) is TransientGraphError
    assert type(error_from_body(400, {"error": "nope"})) is GraphError
    parsed = error_from_body(400, {"error": {"code": "131047", "error_data": []}})
    assert type(parsed) is OutsideWindowError and parsed.details is None
    assert error_for(0, 400).title == "AuthException"


def test_parse_retry_after() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30)), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30)), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_sent_message_is_a_frozen_value() -> None:
    sent = SentMessage(wamid="wamid.A")
    with pytest.raises(AttributeError):
        sent.wamid = "wamid.B"  # type: ignore[misc]


async def test_any_mapping_is_sent_as_json(graph: FakeGraph, make_client: ClientFactory) -> None:
    from types import MappingProxyType

    body = text_message(WA_ID, "héllo ✓")
    await make_client().send_message(MappingProxyType(body))
    assert graph.requests[0].json == body
    assert "héllo ✓".encode() in graph.requests[0].body  # UTF-8, not \\u escapes
