"""The table of keyword versions: every overlay of words and replies the business put in force.

One row per change (`KEYWORDS_FILE` read at startup with new content, or `PUT /v1/keywords`),
never updated: the newest row is the overlay in force, the rows before it are who changed what,
when. The row's id is the version's number, so versions only ever increase.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Integer, String, Text
from sqlmodel import Field, SQLModel

from bot.db.models import UTCDateTime, utcnow

KEYWORD_VERSIONS_TABLE: Final = "keyword_versions"


class KeywordVersion(SQLModel, table=True):
    """One overlay as it was put in force.

    ``source`` is the TOML text as given (a JSON overlay is kept rendered as TOML);
    ``canonical_json`` its canonical form, whose SHA-256 is ``digest``. ``origin`` is ``file``
    or ``api``; ``changed_by`` names who: the file's path, or the API caller's ``X-Changed-By``
    (``API_TOKEN`` when it gave none); ``remote`` is the API caller's address.
    """

    __tablename__ = KEYWORD_VERSIONS_TABLE

    id: int | None = Field(default=None, primary_key=True, sa_type=Integer)
    digest: str = Field(sa_type=String(64), nullable=False)
    source: str = Field(sa_type=Text, nullable=False)
    canonical_json: str = Field(sa_type=Text, nullable=False)
    origin: str = Field(sa_type=String(8), nullable=False)
    changed_by: str = Field(sa_type=String(256), nullable=False)
    remote: str | None = Field(default=None, sa_type=String(64))
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
