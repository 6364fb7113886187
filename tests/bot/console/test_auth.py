"""Who gets into the console: tokens, sessions, CSRF on every form, and the closed console."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bot.clientaddress import parse_networks
from bot.console.audit import AuditLog
from bot.console.sessions import SessionStore
from bot.settings import Settings
from tests.bot.console.support import (
    ADMIN_TOKEN,
    ALICE_TOKEN,
    Agent,
    console_app,
    console_settings,
    csrf_of,
)
from tests.conftest import memory_redis


async def test_nothing_without_a_login(agent: Agent) -> None:
    contact_id = await agent.chat.contact_id()
    for path in (
        "/console",
        f"/console/contacts/{contact_id}",
        f"/console/contacts/{contact_id}/transcript.txt",
        f"/console/contacts/{contact_id}/consent-proof.json",
        "/console/flows",
    ):
        status, _ = await agent.get(path)
        assert status == 303, path
        response = await agent.client.get(path, allow_redirects=False)
        assert response.headers["Location"].startswith("/console/login?next=%2Fconsole")
    posted = await agent.client.post(
        f"/console/contacts/{contact_id}/withdraw",
        data={"category": "marketing", "note": "x" * 10},
        allow_redirects=False,
    )
    assert posted.status == 401
    assert await agent.services.ledger.events(contact_id) == []


async def test_an_agent_logs_in_with_their_token_and_gets_a_strict_cookie(agent: Agent) -> None:
    response = await agent.login(ALICE_TOKEN)
    assert response.status == 303
    assert response.headers["Location"] == "/console"
    cookie = next(c for c in response.headers.getall("Set-Cookie") if "optin_console=" in c)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Max-Age=28800" in cookie
    page = await agent.page("/console")
    assert "Agent <strong>alice</strong>" in page
    for header in ("Content-Security-Policy", "X-Frame-Options", "Cache-Control"):
        response = await agent.client.get("/console")
        assert header in response.headers
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    (entry, *_) = await AuditLog(agent.services.redis).latest()
    assert (entry.agent, entry.action) == ("alice", "login")


async def test_api_token_logs_in_as_admin(embedded_agent: Agent) -> None:
    assert (await embedded_agent.login(ADMIN_TOKEN)).status == 303
    assert "Agent <strong>admin</strong>" in await embedded_agent.page("/console")


async def test_a_wrong_token_is_refused_and_logged(embedded_agent: Agent) -> None:
    response = await embedded_agent.login("not-the-token-at-all")
    assert response.status == 401
    assert "That token is not valid." in await response.text()
    status, _ = await embedded_agent.get("/console")
    assert status == 303
    (entry, *_) = await AuditLog(embedded_agent.services.redis).latest()
    assert entry.action == "login_refused"


async def test_the_login_form_needs_its_own_csrf_token(embedded_agent: Agent) -> None:
    client = embedded_agent.client
    await client.get("/console/login")  # sets the double-submit cookie
    missing = await client.post("/console/login", data={"token": ALICE_TOKEN})
    forged = await client.post("/console/login", data={"token": ALICE_TOKEN, "csrf": "guess"})
    assert (missing.status, forged.status) == (403, 403)
    status, _ = await embedded_agent.get("/console")
    assert status == 303


async def test_login_goes_back_to_the_page_asked_for_and_never_off_site(
    embedded_agent: Agent,
) -> None:
    response = await embedded_agent.login(next_path="%2Fconsole%2Fflows")
    assert response.headers["Location"] == "/console/flows"
    await embedded_agent.client.post("/console/logout", data={})
    for target in ("https://evil.example/", "//evil.example/console", "/sandbox"):
        embedded_agent.client.session.cookie_jar.clear()
        response = await embedded_agent.login(next_path=target)
        assert response.headers["Location"] == "/console", target


async def test_every_post_needs_the_session_csrf_token(agent: Agent) -> None:
    await agent.chat.say("hello")
    contact_id = await agent.chat.contact_id()
    await agent.login()
    page = f"/console/contacts/{contact_id}"
    fields = {"category": "marketing", "note": "asked by phone"}
    path = f"/console/contacts/{contact_id}/withdraw"
    missing = await agent.submit(path, fields, from_page=page, csrf=False)
    assert missing.status == 403
    assert "no valid CSRF token" in await missing.text()
    wrong = await agent.submit(path, {**fields, "csrf": "x" * 43}, from_page=page, csrf=False)
    assert wrong.status == 403
    reveal = await agent.client.post(f"/console/contacts/{contact_id}/reveal", data={})
    assert reveal.status == 403
    assert await agent.services.ledger.events(contact_id) == []
    ok = await agent.submit(path, fields, from_page=page)
    assert ok.status == 303


async def test_a_cross_site_post_is_refused_even_with_the_token(embedded_agent: Agent) -> None:
    await embedded_agent.chat.say("hello")
    contact_id = await embedded_agent.chat.contact_id()
    await embedded_agent.login()
    page = await embedded_agent.page(f"/console/contacts/{contact_id}")
    from tests.bot.console.support import csrf_of

    response = await embedded_agent.client.post(
        f"/console/contacts/{contact_id}/reveal",
        data={"csrf": csrf_of(page)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status == 403


async def test_logout_ends_the_session(embedded_agent: Agent) -> None:
    await embedded_agent.login()
    page = await embedded_agent.page("/console")
    response = await embedded_agent.submit("/console/logout", {}, from_page="/console")
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    assert page
    status, _ = await embedded_agent.get("/console")
    assert status == 303


async def test_too_many_wrong_tokens_must_wait(embedded_agent: Agent) -> None:
    for _ in range(10):
        assert (await embedded_agent.login("wrong-token-wrong-token")).status == 401
    assert (await embedded_agent.login(ALICE_TOKEN)).status == 429


async def test_without_any_token_outside_the_sandbox_the_console_is_closed(
    tmp_path: Any, settings_for: Any
) -> None:
    from bot.db.migrate import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"
    await migrate(url)
    settings = console_settings(
        settings_for,
        (url, f"memory://{uuid.uuid4().hex}"),
        api_token=None,
        agent_tokens=(),
        access_token="live-token",
        graph_api_url="http://127.0.0.1:9",
    )
    async with console_app(settings) as agent:
        for path in ("/console", "/console/login"):
            status, page = await agent.get(path)
            assert status == 401 and "The console is closed" in page
        response = await agent.client.post("/console/login", data={"token": "anything"})
        assert response.status == 401


async def test_the_sandbox_without_tokens_is_open_and_says_so(
    tmp_path: Any, settings_for: Any
) -> None:
    from bot.db.migrate import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"
    await migrate(url)
    settings = console_settings(
        settings_for, (url, f"memory://{uuid.uuid4().hex}"), api_token=None, agent_tokens=()
    )
    async with console_app(settings) as agent:
        await agent.chat.say("hello")
        contact_id = await agent.chat.contact_id()
        page = await agent.page("/console")
        assert "this console is open to" in page
        assert "Agent <strong>sandbox</strong>" in page
        posted = await agent.client.post(
            f"/console/contacts/{contact_id}/withdraw",
            data={"category": "marketing", "note": "asked"},
        )
        assert posted.status == 403
        response = await agent.submit(
            f"/console/contacts/{contact_id}/withdraw",
            {"category": "marketing", "note": "asked by phone"},
            from_page=f"/console/contacts/{contact_id}",
        )
        assert response.status == 303
        (row,) = await agent.services.ledger.events(contact_id)
        assert '"agent":"sandbox"' in (row.evidence_json or "")


@pytest.mark.parametrize("change", ["new token", "removed"])
async def test_a_session_ends_when_its_agents_token_changes(change: str) -> None:
    redis = memory_redis()
    before = Settings(api_token="a" * 20, agent_tokens=(("alice", ALICE_TOKEN),))
    cookie, session = await SessionStore(redis, before).create("alice")
    assert session.agent == "alice" and len(session.csrf) >= 32
    assert await SessionStore(redis, before).get(cookie) == session
    tokens = (("alice", "another-token-0123456789"),) if change == "new token" else ()
    after = Settings(api_token="a" * 20, agent_tokens=tokens)
    assert await SessionStore(redis, after).get(cookie) is None
    assert await SessionStore(redis, before).get("forged-cookie") is None
    keys = await redis.keys("optin:console:session:*")
    assert cookie not in "".join(keys)
    assert 0 < await redis.ttl(keys[0]) <= 8 * 3600
    await redis.aclose()


async def test_behind_a_trusted_proxy_one_agents_wrong_tokens_do_not_lock_out_another(
    tmp_path: Any, settings_for: Any
) -> None:
    """Regression: the login throttle counted failures per peer address, which behind a load
    balancer is the balancer's, so ten wrong tokens from one agent locked everyone out."""
    from bot.db.migrate import migrate
    from tests.bot.console.support import console_app, console_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    settings = console_settings(
        settings_for,
        (url, f"memory://{uuid.uuid4().hex}"),
        trusted_proxies=parse_networks("127.0.0.0/8, ::1"),
    )
    async with console_app(settings) as agent:
        mallory = {"X-Forwarded-For": "198.51.100.66"}
        for _ in range(10):
            assert (await agent.login("wrong-token-wrong-token", headers=mallory)).status == 401
        assert (await agent.login(ALICE_TOKEN, headers=mallory)).status == 429
        alice = {"X-Forwarded-For": "198.51.100.7"}
        assert (await agent.login(ALICE_TOKEN, headers=alice)).status == 303
        entries = await AuditLog(agent.services.redis).latest(limit=20)
        assert {e.detail.get("remote") for e in entries} >= {"198.51.100.66", "198.51.100.7"}


async def _post_logins(agent: Agent, tokens: list[str]) -> list[int]:
    """Post every login at once, each with the same login-form nonce and no shared cookie jar
    (a 401 page sets a fresh nonce, which would spoil the others' CSRF check)."""
    import asyncio

    import aiohttp

    form = await agent.client.get("/console/login")
    page = await form.text()
    nonce = csrf_of(page)
    url = str(agent.client.make_url("/console/login"))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(token: str) -> int:
            headers = {"Cookie": f"optin_console_login={nonce}"}
            async with session.post(
                url,
                data={"csrf": nonce, "token": token},
                headers=headers,
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(token) for token in tokens)))


async def test_concurrent_wrong_tokens_are_checked_only_up_to_the_limit(agent: Agent) -> None:
    """Regression (issue 9, item 8): the throttle read the failure count, compared the token,
    then incremented, so 64 concurrent wrong tokens were all checked instead of ten."""
    from unittest import mock

    import bot.console.auth
    from bot.console.throttle import MAX_FAILURES

    compared = mock.Mock(wraps=bot.console.auth.agent_for_token)

    with mock.patch.object(bot.console.auth, "agent_for_token", compared):
        statuses = await _post_logins(agent, ["wrong-token-wrong-token"] * 64)
    assert compared.call_count == MAX_FAILURES
    assert statuses.count(401) == MAX_FAILURES, statuses
    assert statuses.count(429) == 64 - MAX_FAILURES, statuses
    refused = [
        e
        for e in await AuditLog(agent.services.redis).latest(limit=100)
        if e.action == "login_refused"
    ]
    assert len(refused) == MAX_FAILURES
    (key,) = await agent.services.redis.keys("optin:console:login-failures:*")
    assert 0 < await agent.services.redis.ttl(key) <= 900


async def test_a_right_token_gives_its_attempt_back(embedded_agent: Agent) -> None:
    for _ in range(9):
        assert (await embedded_agent.login("wrong-token-wrong-token")).status == 401
    for _ in range(3):
        assert (await embedded_agent.login(ALICE_TOKEN)).status == 303
        embedded_agent.client.session.cookie_jar.clear()
    assert (await embedded_agent.login("wrong-token-wrong-token")).status == 401
    assert (await embedded_agent.login(ALICE_TOKEN)).status == 429


@pytest.mark.services
async def test_two_hundred_concurrent_logins_get_no_503_from_the_redis_pool(
    real_stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression (issue 9, item 8): Redis clients used redis-py's default pool, which raises
    "Too many connections" past 100, so 116 of 200 concurrent logins got 503. The pool now
    blocks (REDIS_MAX_CONNECTIONS, REDIS_POOL_TIMEOUT) instead of failing."""
    settings = console_settings(settings_for, real_stack_urls)
    async with console_app(settings, web_only=True) as agent:
        # All from one address, too: right tokens wait for a throttle slot, none is refused.
        statuses = await _post_logins(agent, [ALICE_TOKEN] * 200)
        assert statuses == [303] * 200, {s: statuses.count(s) for s in set(statuses)}
        pool = agent.services.redis.connection_pool
        assert pool.max_connections == settings.redis_max_connections


async def test_behind_a_tls_proxy_the_session_cookie_is_secure(
    tmp_path: Any, settings_for: Any
) -> None:
    """Regression (issue 9, item 9): behind a TLS-terminating proxy the request is plain HTTP,
    so the session cookie lacked `Secure` although the browser spoke HTTPS; `X-Forwarded-Proto`
    from a proxy in TRUSTED_PROXIES was ignored."""
    from bot.db.migrate import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    trusted = console_settings(
        settings_for,
        (url, f"memory://{uuid.uuid4().hex}"),
        trusted_proxies=parse_networks("127.0.0.0/8, ::1"),
    )
    untrusted = console_settings(
        settings_for,
        (url, f"memory://{uuid.uuid4().hex}"),
        trusted_proxies=parse_networks("192.0.2.0/24"),
    )
    for settings, secure in ((trusted, True), (untrusted, False)):
        async with console_app(settings, web_only=True) as agent:
            headers = {"X-Forwarded-Proto": "https"}
            form = await agent.client.get("/console/login", headers=headers)
            login_cookie = next(
                c for c in form.headers.getall("Set-Cookie") if "optin_console_login=" in c
            )
            assert ("Secure" in login_cookie) is secure
            response = await agent.login(ALICE_TOKEN, headers=headers)
            assert response.status == 303
            cookie = next(c for c in response.headers.getall("Set-Cookie") if "optin_console=" in c)
            assert ("Secure" in cookie) is secure, cookie


async def test_a_slot_held_by_a_dead_process_is_given_up() -> None:
    from bot.console.throttle import CHECK_SLOT_MS, MAX_FAILURES, LoginAttempt, Slot

    redis = memory_redis()
    held = [LoginAttempt(redis, "198.51.100.9") for _ in range(MAX_FAILURES)]
    for attempt in held:
        assert await attempt.take(wait_s=0) is Slot.GO
    assert await LoginAttempt(redis, "198.51.100.9").take(wait_s=0.05) is Slot.BUSY
    assert await LoginAttempt(redis, "198.51.100.10").take(wait_s=0) is Slot.GO
    # The holders died: their slots age past CHECK_SLOT_MS and are given up.
    checks = "optin:console:login-checks:198.51.100.9"
    members = await redis.zrange(checks, 0, -1)
    await redis.zadd(checks, dict.fromkeys(members, 0))
    assert await LoginAttempt(redis, "198.51.100.9").take(wait_s=0) is Slot.GO
    assert 0 < await redis.pttl(checks) <= CHECK_SLOT_MS
    for attempt in held:
        await attempt.failed()
    assert await LoginAttempt(redis, "198.51.100.9").take(wait_s=1) is Slot.LOCKED
    await redis.aclose()
