"""`GET /v1/openapi.json`: a valid OpenAPI 3.1 document that describes every `/v1` route."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from openapi_spec_validator import validate

from bot.api import openapi
from bot.api.validation import BODY_ERROR_STATUSES
from tests.bot.api.apicalls import ClientFactory, api_client

METHODS = {"get", "post", "put", "patch", "delete"}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


async def test_the_document_is_served_without_a_token_and_is_valid(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for, access_token="live")
    response = await client.get("/v1/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"] == version("optin-bot")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

    routes = {
        (route.resource.canonical, route.method.lower())
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method.lower() in METHODS
    }
    described = {(path, method) for path, method, _ in operations(document)}
    undescribed = sorted(routes - described)
    assert not undescribed, (
        f"routes missing from the document (is their module in API_MODULES?): {undescribed}"
    )
    assert described <= routes, sorted(described - routes)


def test_every_operation_follows_the_conventions() -> None:
    document = openapi.build_document()
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation["summary"] and operation["tags"], where
        public = operation.get("security") == []
        assert ("401" in operation["responses"]) is not public, where
        for status, response in operation["responses"].items():
            assert response["description"], (where, status)
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)
            elif status != "204":
                assert response["content"], (where, status)
        if "requestBody" in operation:
            for status in BODY_ERROR_STATUSES:
                assert str(status) in operation["responses"], (where, status)


def test_the_request_schemas_are_the_ones_bodies_are_validated_with() -> None:
    from bot.api import messages, optins

    schemas = openapi.build_document()["components"]["schemas"]
    for module, name in ((optins, "OptinRequest"), (messages, "MessageRequest")):
        assert module.BODY.name == name
        assert schemas[name] == module.OPENAPI_SCHEMAS[name]
        assert schemas[name]["additionalProperties"] is False


@pytest.fixture
def clashing_module() -> Iterator[str]:
    name = "tests_clashing_api_module"
    module = types.ModuleType(name)
    module.OPENAPI_PATHS = {  # type: ignore[attr-defined]
        "/v1/messages": {"post": {"operationId": "again", "responses": {}}}
    }
    module.OPENAPI_SCHEMAS = {"Error": {"type": "string"}}  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield name
    del sys.modules[name]


def test_a_route_or_schema_described_twice_is_an_error(clashing_module: str) -> None:
    with pytest.raises(ValueError, match="Error is already defined"):
        openapi.build_document((*openapi.API_MODULES, clashing_module))
    module = sys.modules[clashing_module]
    module.OPENAPI_SCHEMAS = {}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="POST /v1/messages is described twice"):
        openapi.build_document((*openapi.API_MODULES, clashing_module))
