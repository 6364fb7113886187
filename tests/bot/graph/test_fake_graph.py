"""The fake Graph server itself: routing, recording, Meta-shaped answers and every script."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.graph import Recipient, template_message, text_message
from tests.fakes.graph import FakeGraph, RecordedRequest, ScriptedResponse, meta_error_body

WA_ID = "15551234567"
NUMBER = "106540352242922"


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_base_url_is_local_with_a_version(graph: FakeGraph) -> None:
    assert graph.base_url == f"http://127.0.0.1:{graph.port}/v25.0"
    assert graph.port > 0
    assert graph.messages_url(NUMBER) == f"{graph.base_url}/{NUMBER}/messages"


async def test_default_success_is_meta_shaped_and_recorded(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    body = text_message(WA_ID, "hello")
    before = time.monotonic()
    status, answer, _ = await post(
        session, graph.messages_url(NUMBER), body, {"Authorization": "Bearer abc"}
    )

    assert status == 200
    wamid = answer["messages"][0]["id"]
    assert answer == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": WA_ID, "wa_id": WA_ID}],
        "messages": [{"id": wamid}],
    }
    assert wamid.startswith("wamid.")
    [request] = graph.requests
    assert isinstance(request, RecordedRequest)
    assert (request.method, request.path, request.version) == (
        "POST",
        f"/v25.0/{NUMBER}/messages",
        "v25.0",
    )
    assert request.phone_number_id == NUMBER
    assert request.headers["authorization"] == "Bearer abc"
    assert request.json == body and graph.bodies == [body]
    assert before <= request.received_at <= time.monotonic()
    assert request.action == "accepted" and request.validation_error is None
    assert [(m.wamid, m.body) for m in graph.accepted] == [(wamid, body)]


async def test_wamids_are_unique(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    body = text_message(WA_ID, "hello")
    answers = await asyncio.gather(
        *(post(session, graph.messages_url(NUMBER), body) for _ in range(20))
    )
    assert len({answer["messages"][0]["id"] for _, answer, _ in answers}) == 20


async def test_any_version_segment_is_accepted(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    url = f"http://127.0.0.1:{graph.port}/v23.0/{NUMBER}/messages"
    status, _, _ = await post(session, url, text_message(WA_ID, "hi"))
    assert status == 200
    assert graph.requests[0].version == "v23.0"


async def test_bsuid_and_template_success_bodies(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    bsuid = "US.13491208655302741918"
    _, answer, _ = await post(
        session, graph.messages_url(NUMBER), text_message(Recipient(user_id=bsuid), "hi")
    )
    assert answer["contacts"] == [{"input": bsuid, "user_id": bsuid}]

    _, answer, _ = await post(
        session, graph.messages_url(NUMBER), template_message(WA_ID, "hello_world", "en")
    )
    assert answer["messages"][0]["message_status"] == "accepted"


async def test_fail_next_answers_meta_errors_then_recovers(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(2, status=429, retry_after=3)
    graph.fail_next(1, status=400, code=131047, details="window closed")
    url = graph.messages_url(NUMBER)
    body = text_message(WA_ID, "hi")

    results = [await post(session, url, body) for _ in range(4)]

    statuses = [status for status, _, _ in results]
    assert statuses == [429, 429, 400, 200]
    first_error = results[0][1]["error"]
    assert first_error["code"] == 130429
    assert first_error["type"] == "OAuthException"
    assert first_error["fbtrace_id"]
    assert results[0][2]["Retry-After"] == "3"
    window = results[2][1]["error"]
    assert (window["code"], window["error_data"]["details"]) == (131047, "window closed")
    assert "Retry-After" not in results[2][2]
    assert [r.action for r in graph.requests] == ["failed", "failed", "failed", "accepted"]


def test_meta_error_body_defaults() -> None:
    body = meta_error_body(131000, error_subcode=7)
    assert body["error"]["message"] == "(#131000) Something went wrong"
    assert body["error"]["error_subcode"] == 7
    assert body["error"]["error_data"]["messaging_product"] == "whatsapp"


async def test_responder_sync_async_and_fall_through(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    seen: list[RecordedRequest] = []

    def teapot(request: RecordedRequest) -> ScriptedResponse | None:
        seen.append(request)
        if request.json["text"]["body"] == "pass":
            return None
        return ScriptedResponse(418, {"custom": True}, {"X-Fake": "yes"})

    graph.respond_with(teapot)
    url = graph.messages_url(NUMBER)
    status, answer, headers = await post(session, url, text_message(WA_ID, "brew"))
    assert (status, answer, headers["X-Fake"]) == (418, {"custom": True}, "yes")
    status, answer, _ = await post(session, url, text_message(WA_ID, "pass"))
    assert status == 200 and answer["messages"][0]["id"].startswith("wamid.")
    assert [r.json["text"]["body"] for r in seen] == ["brew", "pass"]

    async def later(request: RecordedRequest) -> ScriptedResponse:
        await asyncio.sleep(0)
        return ScriptedResponse(200, {"messaging_product": "whatsapp"})

    graph.respond_with(later)
    status, answer, _ = await post(session, url, text_message(WA_ID, "x"))
    assert (status, answer) == (200, {"messaging_product": "whatsapp"})

    graph.fail_next(1, status=502)  # scripted actions come before the responder
    status, _, _ = await post(session, url, text_message(WA_ID, "x"))
    assert status == 502

    graph.respond_with(None)
    status, _, _ = await post(session, url, text_message(WA_ID, "x"))
    assert status == 200


async def test_latency_and_stall(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    url = graph.messages_url(NUMBER)
    graph.latency = 0.2
    started = time.monotonic()
    await post(session, url, text_message(WA_ID, "slow"))
    assert time.monotonic() - started >= 0.2

    graph.latency = 0.0
    graph.stall_next(1, seconds=0.3)
    started = time.monotonic()
    status, _, _ = await post(session, url, text_message(WA_ID, "stalled"))
    assert status == 200 and time.monotonic() - started >= 0.3

    started = time.monotonic()
    await post(session, url, text_message(WA_ID, "fast"))
    assert time.monotonic() - started < 0.2


async def test_close_releases_stalled_requests(session: aiohttp.ClientSession) -> None:
    async with FakeGraph() as graph:
        graph.stall_next(1, seconds=60.0)
        pending = asyncio.ensure_future(
            post(session, graph.messages_url(NUMBER), text_message(WA_ID, "hi"))
        )
        await graph.wait_for_requests(1)
        started = time.monotonic()
    assert time.monotonic() - started < 5.0
    # The stalled request is answered (or cut off) instead of hanging on.
    results: list[object] = list(await asyncio.gather(pending, return_exceptions=True))
    assert isinstance(results[0], (tuple, aiohttp.ClientError)), results


async def test_reset_next_drops_the_connection(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.reset_next(1)
    url = graph.messages_url(NUMBER)
    with pytest.raises(aiohttp.ClientError):
        await post(session, url, text_message(WA_ID, "hi"))
    status, _, _ = await post(session, url, text_message(WA_ID, "again"))
    assert status == 200
    assert [r.action for r in graph.requests] == ["reset", "accepted"]


async def test_wait_for_requests(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.05)
        await post(session, graph.messages_url(NUMBER), text_message(WA_ID, "hi"))

    task = asyncio.ensure_future(send_later())
    requests = await graph.wait_for_requests(1, within=5.0)
    await task
    assert len(requests) == 1
    with pytest.raises(TimeoutError):
        await graph.wait_for_requests(2, within=0.05)


async def test_invalid_body_is_refused_like_meta(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    assert graph.schema_available
    body = text_message(WA_ID, "hi")
    body["txt"] = {"body": "typo"}
    graph.fail_next(1, status=500)

    status, answer, _ = await post(session, graph.messages_url(NUMBER), body)

    assert status == 400
    assert answer["error"]["code"] == 100
    assert "'txt' was unexpected" in answer["error"]["error_data"]["details"]
    [request] = graph.requests
    assert request.action == "invalid"
    assert request.validation_error is not None and "'txt'" in request.validation_error
    assert graph.accepted == []
    # The invalid request did not consume the scripted failure.
    status, _, _ = await post(session, graph.messages_url(NUMBER), text_message(WA_ID, "ok"))
    assert status == 500


async def test_validation_can_be_switched_off(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.validate = False
    assert not graph.schema_available
    body = {"messaging_product": "whatsapp", "to": WA_ID, "type": "text", "bogus": 1}
    status, _, _ = await post(session, graph.messages_url(NUMBER), body)
    assert status == 200
    assert graph.requests[0].validation_error is None


async def test_without_the_openapi_file_nothing_is_validated(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with FakeGraph(openapi_path=tmp_path / "absent.yaml") as graph:
        assert not graph.schema_available
        status, _, _ = await post(session, graph.messages_url(NUMBER), {"anything": True})
    assert status == 200


async def test_non_json_body_is_refused(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    async with session.post(graph.messages_url(NUMBER), data=b"not json") as response:
        assert response.status == 400
        answer = await response.json()
    assert answer["error"]["code"] == 100
    assert graph.requests[0].json is None


async def test_read_receipts_are_acknowledged(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"}
    status, answer, _ = await post(session, graph.messages_url(NUMBER), body)
    assert (status, answer) == (200, {"success": True})
    assert graph.requests[0].action == "read"


async def test_token_and_number_checks(session: aiohttp.ClientSession) -> None:
    async with FakeGraph(access_token="secret", phone_number_id=NUMBER) as graph:
        body = text_message(WA_ID, "hi")
        status, answer, _ = await post(session, graph.messages_url(NUMBER), body)
        assert (status, answer["error"]["code"]) == (401, 190)

        good = {"Authorization": "Bearer secret"}
        status, answer, _ = await post(session, graph.messages_url("999"), body, good)
        assert (status, answer["error"]["code"]) == (400, 100)

        status, _, _ = await post(session, graph.messages_url(NUMBER), body, good)
        assert status == 200
    assert [r.action for r in graph.requests] == ["unauthorized", "invalid", "accepted"]


async def test_unknown_paths_are_404(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{graph.base_url}/{NUMBER}/media", json={}) as response:
        assert response.status == 404
    assert graph.requests == []


async def test_clear_forgets_everything(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    await post(session, graph.messages_url(NUMBER), text_message(WA_ID, "hi"))
    graph.fail_next(3)
    graph.latency = 1.0
    graph.respond_with(lambda _r: ScriptedResponse(500))
    graph.clear()
    assert graph.requests == [] and graph.accepted == []
    status, _, _ = await post(session, graph.messages_url(NUMBER), text_message(WA_ID, "hi"))
    assert status == 200


async def test_port_before_start_is_an_error() -> None:
    graph = FakeGraph()
    with pytest.raises(RuntimeError, match="not started"):
        _ = graph.base_url
