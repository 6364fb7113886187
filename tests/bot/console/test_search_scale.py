"""Search on 100,000 contacts answers from indexes, not by reading the whole table.

The contacts are bulk-loaded with PostgreSQL's COPY, the tables analysed, and each kind of query
`EXPLAIN`ed: no sequential scan of `contacts` or `contact_identities` may appear. Timing would be
flaky; the plan is what makes it fast on any machine. The name and username searches use the
indexes on `lower(...)` (in code point order) that migration 0004 creates.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from bot.console.search import parse_query, search_contacts, search_statement
from bot.db.engine import create_engine, session_factory

CONTACTS = 100_000
#: The indexes the name and username searches are written for (migration 0004 creates them).
NAME_INDEXES = ("ix_contacts_username_lower", "ix_contacts_profile_name_lower")


async def _connect(database_url: str) -> asyncpg.Connection:
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database,
    )


async def _load(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    contacts = [
        (
            n,
            f"{34600000000 + n * 7}",
            f"ES.{10**18 + n}" if n % 2 else None,
            f"user{n}" if n % 3 == 0 else None,
            f"Customer {n:06d}",
            now,
            now,
        )
        for n in range(1, CONTACTS + 1)
    ]
    await conn.copy_records_to_table(
        "contacts",
        records=contacts,
        columns=["id", "wa_id", "user_id", "username", "profile_name", "created_at", "updated_at"],
    )
    await conn.execute("SELECT setval('contacts_id_seq', $1)", CONTACTS)
    await conn.copy_records_to_table(
        "contact_identities",
        records=[(n, "wa_id", wa_id, now) for n, wa_id, *_ in contacts],
        columns=["contact_id", "kind", "value", "valid_from"],
    )
    await conn.execute("ANALYZE contacts")
    await conn.execute("ANALYZE contact_identities")


async def _plan(conn: asyncpg.Connection, text: str, before: int | None = None) -> str:
    statement = search_statement(parse_query(text), dialect="postgresql", before=before)
    sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    rows = await conn.fetch(f"EXPLAIN {sql}")
    return "\n".join(row[0] for row in rows)


def _uses_indexes_only(plan: str) -> bool:
    return "Seq Scan" not in plan and "Index" in plan


async def test_every_search_uses_an_index_on_100000_contacts(
    real_stack_urls: tuple[str, str],
) -> None:
    database_url, _ = real_stack_urls
    conn = await _connect(database_url)
    try:
        await _load(conn)
        queries = (
            "",  # the newest contacts
            "+34 600 000 07",  # a number prefix
            "34600000700",  # an exact number (current, or former through the history)
            "ES.1000000000000000001",  # a BSUID
        )
        for text in queries:
            plan = await _plan(conn, text)
            assert _uses_indexes_only(plan), f"{text!r}:\n{plan}"
        plan = await _plan(conn, "", before=50_000)
        assert _uses_indexes_only(plan), plan

        present = {
            row["indexname"]
            for row in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'contacts'"
            )
        }
        assert set(NAME_INDEXES) <= present, "the migrations create the search indexes"
        for text in ("customer 0999", "@user12345"):
            plan = await _plan(conn, text)
            assert _uses_indexes_only(plan), f"{text!r}:\n{plan}"
            assert "_lower" in plan, plan
    finally:
        await conn.close()

    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        page = await search_contacts(sessions, parse_query("customer 0999"), page_size=25)
        assert [c.profile_name for c in page.contacts] == [
            f"Customer {n:06d}" for n in range(99999, 99974, -1)
        ]
        assert page.next_before == 99975
        exact = await search_contacts(sessions, parse_query("+34 600 000 700"))
        assert [c.id for c in exact.contacts] == [100]
    finally:
        await engine.dispose()
