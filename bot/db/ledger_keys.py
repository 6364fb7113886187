"""The secret that keys the consent ledger: HMAC-SHA256 over each row's hash and each head.

A plain hash chain shows an edit only to someone who trusts the heads; whoever can write SQL can
rewrite a row, recompute every later hash and move the head. A MAC under a secret kept outside
the database (``LEDGER_KEY``) cannot be recomputed by them, so rewritten rows and a head moved
back after deleting the newest rows no longer verify.

Every row and head names the id of the key that signed it (``key_id``). Rotating the key starts
signing new rows under a new id; old rows are never rewritten, so the old keys stay needed to
verify them (``LEDGER_OLD_KEYS``). Rows written before the ledger was keyed carry no MAC and are
reported as unkeyed. The keys reach the writers through the engine (``attach_keys``), so every
path that appends (conversations, API records, merges, erasures) signs without being handed them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

#: Longest key id a row can name.
MAX_KEY_ID_LENGTH: Final = 32


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """The key new rows are signed with (``key_id``; None: unkeyed) and every key known by id."""

    key_id: str | None = None
    keys: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def signing_key(self) -> tuple[str, bytes] | None:
        if self.key_id is None:
            return None
        return self.key_id, self.keys[self.key_id]


NO_KEYS: Final = LedgerKeys()


def row_mac(key: bytes, row_hash: str) -> str:
    """MAC of a ledger row: its hash already covers its content and the previous row's hash."""
    return hmac.new(key, f"row:{row_hash}".encode(), hashlib.sha256).hexdigest()


def head_mac(key: bytes, chain: int, seq: int, head_hash: str) -> str:
    """MAC of a chain head: binds the chain, its length and the hash it ends on."""
    return hmac.new(key, f"head:{chain}:{seq}:{head_hash}".encode(), hashlib.sha256).hexdigest()


def macs_equal(expected: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(expected, stored)


_ATTACHED: WeakKeyDictionary[Engine, LedgerKeys] = WeakKeyDictionary()


def attach_keys(engine: AsyncEngine, keys: LedgerKeys) -> None:
    """Sign every ledger append made through ``engine`` with ``keys``."""
    _ATTACHED[engine.sync_engine] = keys


def keys_of_engine(engine: AsyncEngine) -> LedgerKeys:
    return _ATTACHED.get(engine.sync_engine, NO_KEYS)


def keys_of(session: AsyncSession) -> LedgerKeys:
    """The keys attached to the engine ``session`` is bound to (none: rows are unkeyed)."""
    bind = session.bind
    if isinstance(bind, AsyncEngine):
        return keys_of_engine(bind)
    return NO_KEYS
