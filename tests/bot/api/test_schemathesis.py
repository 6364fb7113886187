"""schemathesis against the running app: every operation of `/v1/openapi.json`, fuzzed.

The app is served on loopback (the real aiohttp server, its workers running); schemathesis reads
the document from it and sends bodies, paths and queries generated from the schemas. Each
response must be no 5xx, a documented status, the documented content type and conform to the
documented schema. Some contacts are seeded first, under the identifiers the document gives as
examples, so reads also hit real data. schemathesis is synchronous (requests), so it runs in a
thread while the event loop serves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import requests
import schemathesis
import schemathesis.checks
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from bot.app import create_app
from tests.bot.api.apicalls import AUTH, TOKEN, optin_body
from tests.fakes.webhooks import dumps, signed, text_webhook

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
EXAMPLES_PER_OPERATION = 25
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def fuzz(base_url: str) -> list[str]:
    """Run every operation; the failures, one report each."""
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    session = requests.Session()
    session.headers.update(AUTH)
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert len(operations) >= 6
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(), *schema.get_strategies_from_examples(operation)
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    session.close()
    return failures


async def seed(server: TestServer) -> None:
    """Contacts under the document's example identifiers: one opted in, one who wrote."""
    webhook = dumps(text_webhook(wa_id="34612345678", text="hello"))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/optins", {"json": optin_body(contact="+34612345678"), "headers": AUTH}),
        ("/v1/optins", {"json": optin_body(contact="US.13491208655302741918"), "headers": AUTH}),
        ("/webhook", {"data": webhook, "headers": signed(webhook)}),
    ]
    async with aiohttp.ClientSession() as http:
        for path, kwargs in calls:
            async with http.post(server.make_url(path), **kwargs) as response:
                assert response.status < 300, await response.text()


async def test_every_operation_holds_to_the_document(
    stack_urls: tuple[str, str], aiohttp_server: ServerFactory, settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    settings = settings_for(
        database_url=database_url,
        redis_url=redis_url,
        api_token=TOKEN,
        optin_template="optin_confirm",
    )
    server = await aiohttp_server(create_app(settings))
    await seed(server)
    base_url = str(server.make_url("")).rstrip("/")
    failures = await asyncio.to_thread(fuzz, base_url)
    assert not failures, "\n\n".join(failures)
