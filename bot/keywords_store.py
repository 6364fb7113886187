"""Keyword versions in the database: the overlay in force, and who changed what, when.

Every change is a new row of `keyword_versions` (never an update), so the history is complete
and the newest row is the overlay in force on every process. The row's id is the version's
number; with the overlay's digest it makes the label the ledger's evidence records
(`bot.keyword_overrides.version_label`).

`KEYWORDS_FILE` and the API meet here (`sync_file`): the newest change wins. At startup a file
whose content differs from the last file recorded is recorded as a new version (so editing the
file and restarting puts it in force, over an earlier API change); an unchanged file leaves the
newest version in force (so a restart keeps what was put through the API).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.keyword_models import KeywordVersion
from bot.db.models import utcnow
from bot.keyword_overrides import KeywordOverlay, version_label

__all__ = ["API", "FILE", "KeywordStore", "StoredVersion"]

FILE: Final = "file"
API: Final = "api"
MAX_HISTORY: Final = 500


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One recorded keyword version."""

    number: int
    digest: str
    source: str
    overlay: Mapping[str, Any]
    origin: str
    changed_by: str
    remote: str | None
    changed_at: datetime

    @property
    def label(self) -> str:
        return version_label(self.number, self.digest)

    def to_json(self, *, with_source: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.number,
            "digest": self.digest,
            "keywords_version": self.label,
            "origin": self.origin,
            "changed_by": self.changed_by,
            "remote": self.remote,
            "changed_at": self.changed_at.isoformat(),
            "overlay": dict(self.overlay),
        }
        if with_source:
            data["toml"] = self.source
        return data


def _stored(row: KeywordVersion) -> StoredVersion:
    assert row.id is not None
    return StoredVersion(
        number=row.id,
        digest=row.digest,
        source=row.source,
        overlay=json.loads(row.canonical_json),
        origin=row.origin,
        changed_by=row.changed_by,
        remote=row.remote,
        changed_at=row.changed_at,
    )


class KeywordStore:
    """Reads and appends `keyword_versions`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def latest(self, origin: str | None = None) -> StoredVersion | None:
        """The version in force (or the newest of one `origin`); None when none was recorded."""
        query = select(KeywordVersion).order_by(col(KeywordVersion.id).desc()).limit(1)
        if origin is not None:
            query = query.where(col(KeywordVersion.origin) == origin)
        async with self._sessions() as session:
            row = (await session.exec(query)).first()
        return None if row is None else _stored(row)

    async def history(self, limit: int = 50) -> list[StoredVersion]:
        """The newest `limit` versions, newest first."""
        query = select(KeywordVersion).order_by(col(KeywordVersion.id).desc()).limit(limit)
        async with self._sessions() as session:
            rows = (await session.exec(query)).all()
        return [_stored(row) for row in rows]

    async def record(
        self,
        overlay: KeywordOverlay,
        source: str,
        *,
        origin: str,
        changed_by: str,
        remote: str | None = None,
    ) -> StoredVersion:
        """Append a version; it is in force from now on."""
        row = KeywordVersion(
            digest=overlay.digest(),
            source=source,
            canonical_json=json.dumps(overlay.canonical(), ensure_ascii=False, sort_keys=True),
            origin=origin,
            changed_by=changed_by[:256],
            remote=remote[:64] if remote else None,
            changed_at=utcnow(),
        )
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
        return _stored(row)

    async def sync_file(self, overlay: KeywordOverlay, source: str, path: str) -> StoredVersion:
        """Record `KEYWORDS_FILE`'s overlay when it differs from the file last recorded (see
        the module docstring); the version in force afterwards."""
        last_file = await self.latest(FILE)
        if last_file is None or last_file.digest != overlay.digest():
            return await self.record(overlay, source, origin=FILE, changed_by=path)
        current = await self.latest()
        assert current is not None
        return current
