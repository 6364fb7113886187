"""`/v1/export/consents`, `/v1/contacts/{contact}/proof` and `DELETE /v1/contacts/{contact}`.

The records a business keeps about consent, and the one it must give up: the export streams every
current state with its deciding evidence (``bot.export``); the proof is one contact's whole
ledger with the verdict of its hash chains, for "show me the consent"; erasure removes the
contact's personal data and keeps a pseudonymous record of the withdrawal (``bot.erasure``,
docs/erasure.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.api.contacts import contact_parameter
from bot.api.errors import api_error
from bot.api.openapi import (
    CONTACT_ID_ERROR,
    CONTACT_PARAMETER,
    error_responses,
    json_response,
    nullable,
    ref,
)
from bot.appkeys import SERVICES
from bot.db.consent_models import HASHED_COLUMNS, ConsentEvent
from bot.db.engine import session_factory
from bot.db.ledger import LedgerRepository, ProblemKind, VerifyReport
from bot.db.models import Contact
from bot.db.pseudonyms import is_erased
from bot.erasure import ContactEraser
from bot.export import EXPORT_COLUMNS, ConsentExport, ExportFormat, evidence_value
from bot.services import Services

PROOF_PAGE: Final = 1000

#: How an auditor recomputes a row's hash, stated in every proof.
HASHING: Final[dict[str, Any]] = {
    "algorithm": "sha256",
    "row_hash": "sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the row's "
    "`covers` fields, timestamps as ISO 8601 UTC with microseconds, `event_key` replaced by its "
    "sha256 (an erased key is `erased:` + that sha256)",
    "covers": [*HASHED_COLUMNS],
    "evidence_digest": "sha256 of `evidence` as stored (canonical JSON); the evidence itself "
    "is not in the row hash, so it can be erased while the chain still verifies",
    "chain": "each row's `prev_hash` is the `hash` of the row before it in the chain; the first "
    "row's is 64 zeros",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _find(request: web.Request) -> Contact | web.Response:
    identifier = contact_parameter(request)
    if isinstance(identifier, web.Response):
        return identifier
    contact = await request.app[SERVICES].contacts.find(identifier)
    if contact is None or contact.id is None:
        return api_error(404, "unknown_contact", f"no contact {identifier}")
    return contact


def _parse_since(text: str | None) -> datetime | None:
    """``since`` as an aware datetime; a `+` of the offset may arrive decoded as a space."""
    if text is None or not text.strip():
        return None
    moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("no time zone")
    return moment.astimezone(UTC)


async def export_consents(request: web.Request) -> web.StreamResponse:
    services: Services = request.app[SERVICES]
    try:
        export_format = ExportFormat(request.query.get("format", ExportFormat.CSV.value))
    except ValueError:
        return api_error(422, "invalid_request", "`format` is csv or jsonl")
    try:
        since = _parse_since(request.query.get("since"))
    except ValueError:
        return api_error(422, "invalid_request", "`since` is an ISO 8601 time with a time zone")
    export = ConsentExport(services.ledger, session_factory(services.engine))
    response = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="consents.{export_format.value}"',
            "Cache-Control": "no-store",
        }
    )
    response.content_type = export_format.content_type
    response.charset = "utf-8"
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in export.chunks(export_format, since=since):
        await response.write(chunk)
    await response.write_eof()
    return response


def _event_json(event: ConsentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "chain": event.chain,
        "seq": event.seq,
        "category": event.category,
        "action": event.action,
        "source": event.source,
        "method": event.method,
        "evidence": evidence_value(event.evidence_json),
        "evidence_digest": event.evidence_digest,
        "evidence_intact": event.evidence_intact(),
        "erased_at": _iso(event.erased_at),
        "business_name": event.business_name,
        "policy_version": event.policy_version,
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(event.recorded_at),
        "event_key": event.event_key,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "hash_valid": event.expected_hash() == event.hash,
        "key_id": event.key_id,
        "mac": event.mac,
    }


def _verification_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "chains_checked": report.chains_checked,
        "rows_checked": report.rows_checked,
        "rows_erased": report.rows_erased,
        "rows_unkeyed": report.rows_unkeyed,
        "key_ids": list(report.key_ids),
        "states_checked": report.states_checked,
        "problems": [
            {
                "row_id": problem.row_id,
                "chain": problem.chain,
                "contact_id": problem.contact_id,
                "seq": problem.seq,
                "kind": problem.kind.value,
                "detail": problem.detail,
            }
            for problem in report.problems
        ],
    }


async def _all_events(ledger: LedgerRepository, contact_id: int) -> list[ConsentEvent]:
    events: list[ConsentEvent] = []
    while True:
        after = events[-1].id if events else None
        page = await ledger.events(contact_id, limit=PROOF_PAGE, after_id=after)
        events.extend(page)
        if len(page) < PROOF_PAGE:
            return events


async def proof(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    contact = await _find(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    events = await _all_events(services.ledger, contact.id)
    report = await services.ledger.verify(contact.id)
    states = await services.ledger.current(contact.id)
    identities = await services.contacts.identities(contact.id)
    return web.json_response(
        {
            "contact": {
                "id": contact.id,
                "wa_id": contact.wa_id,
                "user_id": contact.user_id,
                "erased": is_erased(contact.wa_id, contact.user_id),
            },
            "identities": [
                {
                    "kind": identity.kind,
                    "value": identity.value,
                    "valid_from": _iso(identity.valid_from),
                    "valid_to": _iso(identity.valid_to),
                }
                for identity in identities
            ],
            "consent": {
                name: {
                    "status": view.status.value,
                    "since": _iso(view.since),
                    "source": view.source.value if view.source else None,
                    "method": view.method.value if view.method else None,
                    "policy_version": view.policy_version,
                    "event_id": view.last_event_id,
                }
                for name, view in sorted(states.items())
            },
            "events": [_event_json(event) for event in events],
            "verification": _verification_json(report),
            "hashing": HASHING,
            "generated_at": datetime.now(UTC).isoformat(),
        }
    )


async def erase(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    contact = await _find(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    receipt = await ContactEraser.for_services(services).erase(contact.id, requested_via="api")
    if receipt is None:
        return api_error(404, "unknown_contact", f"no contact {request.match_info['contact']}")
    return web.json_response(receipt.to_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/export/consents", export_consents)
    app.router.add_get("/v1/contacts/{contact}/proof", proof)
    app.router.add_delete("/v1/contacts/{contact}", erase)


# --- OpenAPI 3.1 -------------------------------------------------------------------------------

_TIME: Final = {"type": "string", "format": "date-time"}
_STRING_OR_NULL: Final = {"type": ["string", "null"]}
_TIME_OR_NULL: Final = nullable(_TIME)

_EXPORT_PROPERTIES: Final[dict[str, Any]] = {
    "contact_id": {"type": "integer"},
    "wa_id": {**_STRING_OR_NULL, "description": "`erased:…` once the contact was erased"},
    "user_id": {**_STRING_OR_NULL, "description": "`erased:…` once the contact was erased"},
    "category": {"type": "string"},
    "status": {"enum": ["opted_in", "opted_out", "pending", "lapsed", "none"]},
    "since": _TIME,
    "updated_at": _TIME,
    "source": {"type": "string"},
    "method": {"type": "string"},
    "policy_version": _STRING_OR_NULL,
    "event_id": {"type": "integer", "description": "The ledger row that decided the status"},
    "event_action": {"type": "string"},
    "event_recorded_at": _TIME,
    "event_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "evidence": {
        "type": ["object", "string", "null"],
        "description": "The row's evidence; null once erased (a string in CSV)",
    },
    "evidence_digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "evidence_erased_at": _TIME_OR_NULL,
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ConsentExportRecord": {
        "type": "object",
        "description": "One current consent state with the ledger row that decided it: a CSV "
        "row (columns in this order) or a JSON line.",
        "required": list(EXPORT_COLUMNS),
        "properties": _EXPORT_PROPERTIES,
        "additionalProperties": False,
    },
    "ProofEvent": {
        "type": "object",
        "required": ["id", "chain", "seq", "category", "action", "evidence", "hash", "prev_hash"],
        "properties": {
            "id": {"type": "integer"},
            "chain": {"type": "integer"},
            "seq": {"type": "integer"},
            "category": {"type": "string"},
            "action": {"type": "string"},
            "source": {"type": "string"},
            "method": {"type": "string"},
            "evidence": {"type": ["object", "string", "null"]},
            "evidence_digest": {"type": "string"},
            "evidence_intact": {"type": "boolean"},
            "erased_at": _TIME_OR_NULL,
            "business_name": {"type": "string"},
            "policy_version": _STRING_OR_NULL,
            "occurred_at": _TIME,
            "recorded_at": _TIME,
            "event_key": {"type": "string"},
            "prev_hash": {"type": "string"},
            "hash": {"type": "string"},
            "hash_valid": {"type": "boolean"},
            "key_id": {"type": ["string", "null"]},
            "mac": {"type": ["string", "null"]},
        },
    },
    "LedgerVerification": {
        "type": "object",
        "required": ["ok", "chains_checked", "rows_checked", "rows_erased", "problems"],
        "properties": {
            "ok": {"type": "boolean"},
            "chains_checked": {"type": "integer"},
            "rows_checked": {"type": "integer"},
            "rows_erased": {"type": "integer"},
            "rows_unkeyed": {"type": "integer"},
            "key_ids": {"type": "array", "items": {"type": "string"}},
            "states_checked": {"type": "integer"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["chain", "seq", "kind", "detail"],
                    "properties": {
                        "row_id": {"type": ["integer", "null"]},
                        "chain": {"type": "integer"},
                        "contact_id": {"type": ["integer", "null"]},
                        "seq": {"type": "integer"},
                        "kind": {"enum": [kind.value for kind in ProblemKind]},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    },
    "ContactProof": {
        "type": "object",
        "description": "Everything the ledger holds about one contact's consent, and whether "
        "its hash chains are intact.",
        "required": ["contact", "identities", "consent", "events", "verification", "hashing"],
        "properties": {
            "contact": {
                "type": "object",
                "required": ["id", "wa_id", "user_id", "erased"],
                "properties": {
                    "id": {"type": "integer"},
                    "wa_id": _STRING_OR_NULL,
                    "user_id": _STRING_OR_NULL,
                    "erased": {"type": "boolean"},
                },
            },
            "identities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kind", "value", "valid_from", "valid_to"],
                    "properties": {
                        "kind": {"enum": ["wa_id", "user_id"]},
                        "value": {"type": "string"},
                        "valid_from": _TIME,
                        "valid_to": _TIME_OR_NULL,
                    },
                },
            },
            "consent": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status", "since", "event_id"],
                    "properties": {
                        "status": {"type": "string"},
                        "since": _TIME_OR_NULL,
                        "source": _STRING_OR_NULL,
                        "method": _STRING_OR_NULL,
                        "policy_version": _STRING_OR_NULL,
                        "event_id": {"type": ["integer", "null"]},
                    },
                },
            },
            "events": {"type": "array", "items": ref("ProofEvent")},
            "verification": ref("LedgerVerification"),
            "hashing": {"type": "object"},
            "generated_at": _TIME,
        },
    },
    "ErasureReceipt": {
        "type": "object",
        "description": "What an erasure did, in pseudonymous terms.",
        "required": [
            "contact",
            "erasure_id",
            "erased_at",
            "already_erased",
            "withdrawn_categories",
            "erased",
        ],
        "properties": {
            "contact": {
                "type": "object",
                "required": ["id", "wa_id", "user_id"],
                "properties": {
                    "id": {"type": "integer"},
                    "wa_id": _STRING_OR_NULL,
                    "user_id": _STRING_OR_NULL,
                },
            },
            "erasure_id": {"type": "string"},
            "erased_at": _TIME,
            "already_erased": {
                "type": "boolean",
                "description": "The contact had been erased before: `erasure_id` and "
                "`erased_at` are that erasure's, the counts what was left this time",
            },
            "withdrawn_categories": {"type": "array", "items": {"type": "string"}},
            "erased": {
                "type": "object",
                "required": [
                    "ledger_evidence",
                    "identities",
                    "transcript_entries",
                    "conversations",
                    "redis_entries",
                ],
                "properties": {
                    name: {"type": "integer", "minimum": 0}
                    for name in (
                        "ledger_evidence",
                        "identities",
                        "transcript_entries",
                        "conversations",
                        "redis_entries",
                    )
                },
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/export/consents": {
        "get": {
            "operationId": "exportConsents",
            "summary": "Every current consent state with its latest evidence, streamed",
            "description": "CSV (a header row, then one row per contact and category) or JSON "
            "Lines, written as it is read: constant memory on any number of contacts. Erased "
            "contacts appear under their pseudonyms, opted out, without evidence.",
            "tags": ["records"],
            "parameters": [
                {
                    "name": "format",
                    "in": "query",
                    "schema": {"enum": ["csv", "jsonl"], "default": "csv"},
                },
                {
                    "name": "since",
                    "in": "query",
                    "description": "Only states changed at or after this time (with a zone)",
                    "schema": _TIME,
                },
            ],
            "responses": {
                "200": {
                    "description": "The export.",
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": ref("ConsentExportRecord")},
                    },
                },
                **error_responses(422),
            },
        }
    },
    "/v1/contacts/{contact}/proof": {
        "get": {
            "operationId": "getContactProof",
            "summary": "One contact's full consent evidence and the check of its hash chains",
            "tags": ["records"],
            "parameters": [CONTACT_PARAMETER],
            "responses": {
                "200": json_response("The proof.", ref("ContactProof")),
                **error_responses(400, 404, descriptions=CONTACT_ID_ERROR),
            },
        }
    },
    "/v1/contacts/{contact}": {
        "delete": {
            "operationId": "eraseContact",
            "summary": "Erase the contact's personal data; keep a pseudonymous record that "
            "they withdrew",
            "description": "Appends a `withdrawn` row for every category, erases the evidence "
            "of the contact's ledger rows (the hash chains still verify), replaces its "
            "identifiers by keyed pseudonyms, clears its profile and transcript texts and "
            "forgets its conversation, window and timers. The same number writing again is "
            "recognised as do-not-contact. Repeating the request answers 200 with "
            "`already_erased: true`.",
            "tags": ["records"],
            "parameters": [CONTACT_PARAMETER],
            "responses": {
                "200": json_response("The erasure receipt.", ref("ErasureReceipt")),
                **error_responses(400, 404, descriptions=CONTACT_ID_ERROR),
            },
        }
    },
}
