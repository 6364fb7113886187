"""The ledger keys of this process, from the settings: configured, generated, or public.

With ``LEDGER_KEY`` set, new rows are signed under ``LEDGER_KEY_ID`` and ``LEDGER_OLD_KEYS``
verify older ones. Without it (only allowed while no token is set, see ``check_startup``) the
embedded mode generates a random key once and keeps it beside its SQLite file, so its ledger is
keyed from the first row and the key travels with the database; any other database falls back
to a public sandbox key, which makes the chain keyed in form but protects nothing. A key file
found beside the database is always loaded for verification, so a ledger begun in embedded mode
still verifies after a real key is configured.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from bot.db.ledger_keys import LedgerKeys
from bot.settings import SANDBOX_LEDGER_KEY, Settings

#: Key id of the key the embedded mode generates for itself.
EMBEDDED_KEY_ID: Final = "embedded"
#: Key id of the public sandbox key.
SANDBOX_KEY_ID: Final = "sandbox"


def _read_or_create(path: Path) -> str:
    """The key in ``path``, created (readable by its owner only) when there is none yet."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key


def ledger_keys(settings: Settings, *, create: bool = True) -> LedgerKeys:
    """Every key this process knows by id, and the one it signs new rows with.

    ``create`` False (verification) never writes a key file, it only reads one.
    """
    keys: dict[str, bytes] = {SANDBOX_KEY_ID: SANDBOX_LEDGER_KEY.encode("utf-8")}
    key_file = Path(settings.ledger_key_file) if settings.ledger_key_file else None
    embedded: str | None = None
    if key_file is not None and (key_file.is_file() or (create and settings.ledger_key is None)):
        embedded = _read_or_create(key_file)
        keys[EMBEDDED_KEY_ID] = embedded.encode("utf-8")
    keys.update((key_id, key.encode("utf-8")) for key_id, key in settings.ledger_old_keys)
    if settings.ledger_key is not None:
        keys[settings.ledger_key_id] = settings.ledger_key.encode("utf-8")
        return LedgerKeys(settings.ledger_key_id, keys)
    if embedded is not None:
        return LedgerKeys(EMBEDDED_KEY_ID, keys)
    return LedgerKeys(SANDBOX_KEY_ID, keys)
