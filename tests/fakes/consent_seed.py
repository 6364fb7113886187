"""Many opted-in contacts, written straight into the tables, for campaign tests and benchmarks.

Going through the ledger's `apply` costs several round trips per contact (minutes for 100,000);
this writes the same rows in bulk: a contact with its identity, one `granted` ledger row per
category with a correct hash chain, the chain head and the current state. The ledger verifies
(`LedgerRepository.verify`) afterwards exactly as if the flows had written it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.consent_models import (
    GENESIS_HASH,
    HASHED_COLUMNS,
    ConsentEvent,
    ConsentState,
    LedgerHead,
    canonical_json,
    event_hash,
)
from bot.db.models import Contact, ContactIdentity, utcnow

BATCH = 1000


def wa_id_of(n: int, prefix: str = "1555") -> str:
    """The n-th seeded number: `1555` and eight digits."""
    return f"{prefix}{n:08d}"


async def seed_opted_in(
    engine: AsyncEngine,
    count: int,
    *,
    categories: Sequence[str] = ("marketing",),
    since: datetime,
    policy_version: str | None = "1",
    start: int = 0,
    business_name: str = "Acme Shoes",
) -> list[int]:
    """Create `count` contacts (wa_ids `wa_id_of(start)`…) opted in to `categories` since
    `since`; return their ids in order."""
    ids: list[int] = []
    now = utcnow()
    for first in range(start, start + count, BATCH):
        numbers = [wa_id_of(n) for n in range(first, min(first + BATCH, start + count))]
        async with engine.begin() as connection:
            rows = await connection.execute(
                insert(_table(Contact))
                .values([{"wa_id": w, "created_at": now, "updated_at": now} for w in numbers])
                .returning(_table(Contact).c.id, _table(Contact).c.wa_id)
            )
            by_number = {wa_id: contact_id for contact_id, wa_id in rows.all()}
            batch_ids = [by_number[w] for w in numbers]
            await connection.execute(
                insert(_table(ContactIdentity)).values(
                    [
                        {"contact_id": c, "kind": "wa_id", "value": w, "valid_from": now}
                        for c, w in zip(batch_ids, numbers, strict=True)
                    ]
                )
            )
            events, heads = _ledger_rows(
                batch_ids, categories, since, policy_version, now, business_name
            )
            written = await connection.execute(
                insert(_table(ConsentEvent))
                .values(events)
                .returning(
                    _table(ConsentEvent).c.id,
                    _table(ConsentEvent).c.contact_id,
                    _table(ConsentEvent).c.category,
                )
            )
            await connection.execute(insert(_table(LedgerHead)).values(heads))
            await connection.execute(
                insert(_table(ConsentState)).values(
                    [
                        {
                            "contact_id": contact_id,
                            "category": category,
                            "status": "opted_in",
                            "since": since,
                            "last_event_id": event_id,
                            "source": "website",
                            "method": "double_opt_in",
                            "policy_version": policy_version,
                            "updated_at": now,
                        }
                        for event_id, contact_id, category in written.all()
                    ]
                )
            )
        ids.extend(batch_ids)
    return ids


def _table(model: Any) -> Any:
    return model.__table__


def _ledger_rows(
    contact_ids: Sequence[int],
    categories: Sequence[str],
    since: datetime,
    policy_version: str | None,
    now: datetime,
    business_name: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    heads: list[dict[str, Any]] = []
    for contact_id in contact_ids:
        prev = GENESIS_HASH
        for seq, category in enumerate(categories, start=1):
            values = {
                "contact_id": contact_id,
                "chain": contact_id,
                "seq": seq,
                "category": category,
                "action": "granted",
                "source": "website",
                "method": "double_opt_in",
                "evidence_json": canonical_json({"seeded": True}),
                "business_name": business_name,
                "policy_version": policy_version,
                "occurred_at": since,
                "recorded_at": now,
                "event_key": f"seed:{contact_id}:{category}",
                "prev_hash": prev,
            }
            if "evidence_digest" in HASHED_COLUMNS:
                digest = hashlib.sha256(values["evidence_json"].encode("utf-8")).hexdigest()
                values["evidence_digest"] = digest
            prev = event_hash(values)
            events.append({**values, "hash": prev})
        heads.append({"chain": contact_id, "seq": len(categories), "hash": prev})
    return events, heads
