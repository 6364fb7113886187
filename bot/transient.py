"""Which failures are the ground giving way (Redis or the database unreachable, a connection
dropped mid-transaction) rather than the work being wrong: those are waited out and retried,
never counted against an event or a message, and never end a task.

One definition for every loop (inbound worker, sender, timers, CRM deliverer, campaigns) and the
webhook's 503, so that none of them treats a dropped connection as fatal while another retries.
"""

from __future__ import annotations

from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["TRANSIENT_ERRORS", "is_transient"]

#: Exception classes that are transient whatever they carry.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
)

#: PostgreSQL SQLSTATEs of a server or connection going away, or of a transaction that only
#: needs running again: class 08 (connection exception), 57P01-57P03 (administrator or crash
#: shutdown, e.g. `pg_terminate_backend`; cannot connect now), 53300 (too many connections),
#: 40001 and 40P01 (serialization failure, deadlock).
_TRANSIENT_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None)
    state = getattr(cause, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is the ground failing (Redis or the database unreachable), not the work."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _sqlstate(exc)
        return state is not None and (state.startswith("08") or state in _TRANSIENT_SQLSTATES)
    return False
