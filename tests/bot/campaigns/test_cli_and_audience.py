"""`optin-bot campaign …` against the database directly, and the audience read page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.campaigns.audience import Criteria, audience_page
from bot.campaigns.spec import identifiers_from_csv, parse_version, version_below
from bot.cli import main
from bot.db.engine import create_engine, session_factory
from bot.db.migrate import migrate
from tests.fakes.consent_seed import seed_opted_in, wa_id_of

OLD = datetime.now(UTC) - timedelta(days=400)


@pytest.fixture
async def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "memory://cli")
    monkeypatch.chdir(tmp_path)
    return url


async def test_the_command_line_creates_starts_and_shows_a_campaign(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database)
    await seed_opted_in(engine, 5, since=OLD)
    await engine.dispose()
    listed = tmp_path / "contacts.csv"
    listed.write_text(f"name,phone\nAna,+{wa_id_of(1)}\nBo,{wa_id_of(2)}\nCy,+15559999999\n")
    deadline = (datetime.now(UTC) + timedelta(days=30)).isoformat()

    args = ["campaign", "create", "--template", "reconsent_v2", "--language", "en_US"]
    args += ["--categories", "marketing", "--older-than-days", "365", "--policy-below", "2"]
    args += ["--csv", str(listed), "--policy-version", "2", "--deadline", deadline]
    assert await _run(args) == 0
    out = capsys.readouterr().out
    assert "campaign 1 created (draft)" in out
    assert "2 listed contacts are recipients; 1 unknown" in out

    assert await _run(["campaign", "resume", "1"]) == 1
    assert await _run(["campaign", "start", "1"]) == 0
    assert "campaign 1 is running" in capsys.readouterr().out
    assert await _run(["campaign", "status", "1", "--once"]) == 0
    shown = capsys.readouterr().out
    assert "campaign 1 running" in shown
    assert "0/2" in shown
    assert "pace 80/s of 80/s" in shown
    assert await _run(["campaign", "pause", "1", "--reason", "legal review"]) == 0
    assert await _run(["campaign", "status", "1", "--once"]) == 0
    assert "paused by operator: legal review" in capsys.readouterr().out
    assert await _run(["campaign", "list"]) == 0
    assert "reconsent_v2" in capsys.readouterr().out
    assert await _run(["campaign", "status", "9", "--once"]) == 2


async def _run(args: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, args)


async def test_the_audience_is_read_in_keyset_pages(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    engine = create_engine(url)
    try:
        old = await seed_opted_in(engine, 7, since=OLD, policy_version="1.9")
        await seed_opted_in(engine, 2, start=7, since=OLD, policy_version="2.0")
        await seed_opted_in(engine, 2, start=9, since=datetime.now(UTC) - timedelta(days=5))
        criteria = Criteria(("marketing",), older_than_days=365, policy_below="2")
        pages = []
        after = 0
        async with session_factory(engine)() as session:
            while True:
                page = await audience_page(
                    session, criteria, after=after, limit=3, now=datetime.now(UTC)
                )
                pages.append(page.contact_ids)
                after = page.cursor
                if page.done:
                    break
        assert [i for p in pages for i in p] == old
        assert all(len(p) <= 3 for p in pages)
    finally:
        await engine.dispose()


def test_policy_versions_compare_as_dotted_numbers() -> None:
    assert parse_version("2.0.0") == parse_version("2") == (2,)
    assert version_below("1.10", "2") and version_below("2", "2.1")
    assert not version_below("10", "9") and not version_below("2.0", "2")
    assert version_below(None, "1") and version_below("2025-q3", "1")


def test_csv_takes_the_named_column_or_the_first() -> None:
    assert identifiers_from_csv("name,wa_id\nAna,+34 612 345 678\nBo,US.1349\n") == [
        "34612345678",
        "US.1349",
    ]
    assert identifiers_from_csv("34612345678\n\n34612345678\n") == ["34612345678"]
    with pytest.raises(ValueError, match="line 2"):
        identifiers_from_csv("phone\nnobody\n")
