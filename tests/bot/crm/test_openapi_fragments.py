"""The delivery log's OpenAPI fragments merge into the document and describe real answers."""

from __future__ import annotations

from typing import Any

import jsonschema

from bot.api import crm
from bot.crm.event_schemas import OPENAPI_WEBHOOKS
from tests.bot.crm.conftest import conforms, document


def test_the_fragments_merge_and_every_reference_resolves() -> None:
    doc = document()
    for path in crm.OPENAPI_PATHS:
        assert path in doc["paths"]
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        if name in crm.OPENAPI_SCHEMAS:
            jsonschema.Draft202012Validator.check_schema(schema)

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for reference in refs(crm.OPENAPI_PATHS) + refs(crm.OPENAPI_SCHEMAS) + refs(OPENAPI_WEBHOOKS):
        assert reference.removeprefix("#/components/schemas/") in schemas, reference
    for path, operations in crm.OPENAPI_PATHS.items():
        for method, operation in operations.items():
            assert operation["operationId"] and operation["summary"] and operation["tags"]
            assert "401" in doc["paths"][path][method]["responses"]


def test_a_delivery_page_conforms() -> None:
    conforms(
        {
            "deliveries": [
                {
                    "event_id": "consent:1",
                    "type": "consent.changed",
                    "status": "dead",
                    "attempts": 1,
                    "contact": {"id": 1, "wa_id": "15550001111", "user_id": None},
                    "enqueued_at": "2026-03-01T09:30:00.000+00:00",
                    "first_attempt_at": "2026-03-01T09:30:00.010+00:00",
                    "last_attempt_at": "2026-03-01T09:30:00.010+00:00",
                    "next_attempt_at": None,
                    "finished_at": "2026-03-01T09:30:00.020+00:00",
                    "last_status_code": 410,
                    "last_error": "HTTP 410: gone",
                    "dead_reason": "gone",
                }
            ],
            "next_cursor": None,
            "receiver": {
                "configured": True,
                "paused": {
                    "reason": "gone",
                    "event_id": "consent:1",
                    "since": "2026-03-01T09:30:00.020+00:00",
                },
                "queued": 3,
            },
        },
        "WebhookDeliveryPage",
    )
