"""Agents' sessions of the console, kept server-side in Redis.

The browser holds only a random id in an HttpOnly, SameSite=Strict cookie; Redis holds who the
agent is and the session's CSRF token, under the SHA-256 of that id (a copy of Redis does not
hand out live sessions). A session lasts at most ``SESSION_TTL`` from login, and ends early when
the agent's token is changed or removed: it remembers a fingerprint of the token it was opened
with and is only valid while the configuration still gives that agent that token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from redis.asyncio import Redis

from bot import redis_keys
from bot.settings import Settings

SESSION_TTL: Final = timedelta(hours=8)
SESSION_PREFIX: Final = redis_keys.CONSOLE_SESSION.prefix + ":"
ADMIN_AGENT: Final = "admin"
#: The agent of an open console (sandbox mode without any token).
SANDBOX_AGENT: Final = "sandbox"
_OPEN_FINGERPRINT: Final = "open"


@dataclass(frozen=True, slots=True)
class AgentSession:
    """A logged-in agent: ``agent`` acts, ``csrf`` must come back with every form."""

    agent: str
    csrf: str
    open_console: bool


def console_open(settings: Settings) -> bool:
    """Sandbox mode without `API_TOKEN` or `AGENT_TOKENS`: the console needs no login, as /v1."""
    return settings.sandbox and settings.api_token is None and not settings.agent_tokens


def can_log_in(settings: Settings) -> bool:
    """Whether anyone can use the console: a token is configured, or it is open."""
    return console_open(settings) or settings.api_token is not None or bool(settings.agent_tokens)


def _agents(settings: Settings) -> list[tuple[str, str]]:
    agents = list(settings.agent_tokens)
    if settings.api_token is not None:
        agents.insert(0, (ADMIN_AGENT, settings.api_token))
    return agents


def agent_for_token(settings: Settings, token: str) -> str | None:
    """The agent a token logs in as; every configured token is compared, in constant time."""
    found = None
    given = token.strip().encode()
    for name, expected in _agents(settings):
        if hmac.compare_digest(given, expected.encode()) and found is None:
            found = name
    return found if given else None


def _fingerprint(settings: Settings, agent: str) -> str | None:
    if console_open(settings):
        return _OPEN_FINGERPRINT if agent == SANDBOX_AGENT else None
    for name, token in _agents(settings):
        if name == agent:
            return hashlib.sha256(f"optin-console:{name}:{token}".encode()).hexdigest()
    return None


def _key(session_id: str) -> str:
    return redis_keys.CONSOLE_SESSION.format(
        session_hash=hashlib.sha256(session_id.encode()).hexdigest()
    )


class SessionStore:
    """Create, read and end sessions; Redis expires them after ``SESSION_TTL``."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def create(self, agent: str) -> tuple[str, AgentSession]:
        """A new session for ``agent``: (the cookie value, the session)."""
        fingerprint = _fingerprint(self._settings, agent)
        if fingerprint is None:
            raise ValueError(f"{agent} cannot log in with the current configuration")
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        key = _key(session_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"agent": agent, "csrf": csrf, "fingerprint": fingerprint})
        pipe.expire(key, int(SESSION_TTL.total_seconds()))
        await pipe.execute()
        return session_id, AgentSession(agent, csrf, console_open(self._settings))

    async def get(self, session_id: str | None) -> AgentSession | None:
        """The live session of a cookie value, or None (unknown, expired or revoked)."""
        if not session_id or len(session_id) > 128:
            return None
        data: Any = await self._redis.hgetall(_key(session_id))
        agent, csrf, fingerprint = data.get("agent"), data.get("csrf"), data.get("fingerprint")
        if not agent or not csrf or not fingerprint:
            return None
        current = _fingerprint(self._settings, agent)
        if current is None or not hmac.compare_digest(current, fingerprint):
            return None
        return AgentSession(agent, csrf, console_open(self._settings))

    async def end(self, session_id: str | None) -> None:
        if session_id:
            await self._redis.delete(_key(session_id))
