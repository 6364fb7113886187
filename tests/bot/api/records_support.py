"""What the export, proof and erasure tests share: an app with a token, consent seeded straight
into the ledger, and validators for the OpenAPI schemas the responses promise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jsonschema
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.api.openapi import COMMON_SCHEMAS
from bot.api.records import OPENAPI_SCHEMAS
from bot.app import create_app
from bot.appkeys import SERVICES
from bot.db.ledger import ConsentChange
from bot.services import Services
from flows.consent import ConsentAction, Method, Source

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
TOKEN = "api-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def records_client(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any, **overrides: Any
) -> Client:
    database_url, redis_url = stack_urls
    settings = settings_for(
        database_url=database_url, redis_url=redis_url, api_token=TOKEN, **overrides
    )
    return await aiohttp_client(create_app(settings))


def services_of(client: Client) -> Services:
    return client.server.app[SERVICES]


def change(
    action: ConsentAction,
    key: str,
    *,
    category: str = "marketing",
    at: datetime = T0,
    evidence: dict[str, str | int | float | bool | None] | None = None,
) -> ConsentChange:
    return ConsentChange(
        category=category,
        action=action,
        source=Source.WEBSITE,
        method=Method.API_RECORD,
        evidence=evidence or {"ip": "203.0.113.7", "wording": "Send me offers", "key": key},
        business_name="Acme Shoes",
        policy_version="2025-01",
        occurred_at=at,
        event_key=key,
    )


async def seed(services: Services, wa_id: str, *changes: ConsentChange) -> int:
    """A contact with ``wa_id`` and ``changes`` appended to its ledger; its id."""
    contact = await services.contacts.resolve(wa_id=wa_id, user_id=None)
    assert contact.id is not None
    await services.ledger.apply(contact.id, list(changes))
    return contact.id


def validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """Checks a value against a component schema of `bot.api.records`."""
    schema = {
        "$ref": f"#/components/schemas/{schema_name}",
        "components": {"schemas": {**COMMON_SCHEMAS, **OPENAPI_SCHEMAS}},
    }
    return jsonschema.Draft202012Validator(schema)
