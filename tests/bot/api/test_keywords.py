"""`/v1/keywords`: a round trip through the API, refusals with their lines, the history, the
version in every decision's evidence, and the answering process using a change at once."""

from __future__ import annotations

from typing import Any

from bot.api.keywords import OPENAPI_SCHEMAS
from bot.appkeys import SERVICES
from bot.conversations import NO_OVERLAY_VERSION
from bot.keywords_store import API
from tests.bot.api.apicalls import (
    AUTH,
    Client,
    ClientFactory,
    api_client,
    get,
    outbound,
    say,
    status_becomes,
)
from tests.fakes.webhooks import eventually

TOML = {**AUTH, "Content-Type": "application/toml"}
OVERLAY = '[en.opt_out]\nadd = ["ENOUGH"]\nremove = ["STOP IT"]\n'


async def put(
    client: Client, text: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.put(
        "/v1/keywords", data=text.encode(), headers={**TOML, **(headers or {})}
    )
    return response.status, dict(await response.json())


async def ledger_evidence(client: Client, contact: str) -> list[dict[str, Any]]:
    code, data = await get(client, f"/v1/contacts/{contact}/ledger")
    assert code == 200, data
    return [event["evidence"] for event in data["events"]]


async def test_a_put_overlay_is_read_back_kept_in_history_and_used_by_the_worker(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    code, before = await get(client, "/v1/keywords")
    assert code == 200
    assert before["version"] == 0 and before["origin"] == "none" and before["overlay"] == {}
    assert before["keywords_version"] == before["in_force_here"] == NO_OVERLAY_VERSION

    code, done = await put(client, OVERLAY, {"X-Changed-By": "maria"})
    assert code == 200, done
    assert done["changed"] is True and done["version"] == 1 and done["origin"] == API
    assert done["keywords_version"] == f"1-{done['digest'][:12]}" == done["in_force_here"]
    assert done["overlay"] == {"en": {"opt_out": {"add": ["ENOUGH"], "remove": ["STOP IT"]}}}

    code, now = await get(client, "/v1/keywords")
    assert code == 200 and now["toml"] == OVERLAY and now["changed_by"] == "maria"
    assert now["remote"] and now["changed_at"]

    # The new word opts out, and the decision's evidence names the version it was taken under.
    await say(client, "15553330001", "Enough!")
    await status_becomes(client, "15553330001", "marketing", "opted_out")
    evidence = await ledger_evidence(client, "15553330001")
    assert evidence and all(e["keywords_version"] == done["keywords_version"] for e in evidence)

    # The removed word no longer does: HELP after it is answered, and nothing was decided.
    await say(client, "15553330002", "stop it")
    await say(client, "15553330002", "HELP")

    async def answered() -> bool:
        rows = await outbound(client, "15553330002")
        return any("This is Acme Shoes on WhatsApp" in (r.get("text") or "") for r in rows)

    await eventually(answered)
    assert await ledger_evidence(client, "15553330002") == []

    # The same overlay again changes nothing; JSON is accepted too, and history lists both.
    code, same = await put(client, "# same words\n" + OVERLAY)
    assert code == 200 and same["changed"] is False and same["version"] == 1
    response = await client.put(
        "/v1/keywords", json={"en": {"help": {"add": ["SUPPORT"]}}}, headers=AUTH
    )
    assert response.status == 200
    second = await response.json()
    assert second["version"] == 2 and second["changed_by"] == "API_TOKEN"
    assert second["toml"] == '[en.help]\nadd = ["SUPPORT"]\n'
    code, history = await get(client, "/v1/keywords/history")
    assert code == 200
    assert [(v["version"], v["changed_by"]) for v in history["versions"]] == [
        (2, "API_TOKEN"),
        (1, "maria"),
    ]
    assert "toml" not in history["versions"][0]
    assert set(history["versions"][0]) == set(OPENAPI_SCHEMAS["KeywordsVersion"]["required"])

    # Back to the locale files: an empty overlay.
    code, empty = await put(client, "")
    assert code == 200 and empty["version"] == 3 and empty["overlay"] == {}


async def test_a_refused_overlay_is_422_naming_each_line_and_why(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    code, error = await put(
        client,
        '[en.opt_out]\nremove = ["REVOKE"]\n[en.replies]\nclarify_kept = "{business} {who}"\n',
    )
    assert code == 422 and error["error"] == "invalid_keywords"
    assert error["detail"].startswith("line 2: en.opt_out.remove: 'REVOKE' is one of the words")
    assert "line 4: en.replies.clarify_kept: unknown placeholder {who}" in error["detail"]
    code, error = await put(client, "[en.opt_out\n")
    assert code == 422 and error["detail"].startswith("line 1: not valid TOML")
    response = await client.put(
        "/v1/keywords", json={"en": {"opt_in": {"add": ["STOP"]}}}, headers=AUTH
    )
    error = await response.json()
    assert response.status == 422
    assert error["detail"].startswith("en.opt_in.add: 'STOP' is already a opt-out word")
    response = await client.put(
        "/v1/keywords", data=b"x", headers={**AUTH, "Content-Type": "image/png"}
    )
    assert response.status == 415
    code, error = await put(client, OVERLAY, {"X-Changed-By": "x" * 200})
    assert code == 422 and "X-Changed-By" in error["detail"]
    response = await client.put("/v1/keywords", data=b"\xff", headers=TOML)
    assert response.status == 422
    code, state = await get(client, "/v1/keywords")
    assert state["version"] == 0  # nothing refused was recorded
    response = await client.get("/v1/keywords/history", params={"limit": "0"}, headers=AUTH)
    assert response.status == 422
    assert (await client.get("/v1/keywords")).status == 401


async def test_the_served_app_puts_a_change_in_force_in_its_own_worker_at_once(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    code, done = await put(client, OVERLAY)
    assert code == 200
    services = client.server.app[SERVICES]
    assert services.keywords.current.keywords_version == done["keywords_version"]
    assert await services.redis.get("optin:keywords:version") == done["keywords_version"]
