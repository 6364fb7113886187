"""The roles' tasks recover by themselves from database connections killed under load.

Bug pinned: during 200 inbound STOPs, `pg_terminate_backend` on the database's connections made
the sender log "CRITICAL bot.roles: sender stopped: DBAPIError" (from `mark_outbound_many`); the
outbound queue stayed stuck with 2 of 200 confirmations sent, `/healthz` still said ok, and only
a restart drained it. Now the supervisor restarts the sender (counted in
`optin_task_restarts_total`), every confirmation goes out and `/healthz` is 200 again.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.fakes.chat import chat_app
from tests.fakes.graph import FakeGraph

CUSTOMERS = 200


async def _terminate_backends(database_url: str) -> int:
    """Kill every connection to this test's own database (never another one)."""
    url = make_url(database_url)
    assert url.database is not None and url.database.startswith("optin_t_")
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username or "postgres", database="postgres"
    )
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.database,
        )
    finally:
        await conn.close()
    return len(rows)


@pytest.mark.services
@pytest.mark.slow  # a fault test: connections killed 4 times a second for 10 to 30 s
async def test_stops_survive_killed_database_connections(
    real_stack_urls: tuple[str, str], settings_for: object
) -> None:
    database_url, redis_url = real_stack_urls
    async with FakeGraph() as graph:
        settings = settings_for(  # type: ignore[operator]
            database_url=database_url,
            redis_url=redis_url,
            access_token="token-1",
            graph_api_url=graph.base_url,
            phone_number_id="106540352242922",
            send_rate=200.0,
        )
        async with chat_app(settings, graph=graph) as chat:
            customers = [f"1555200{n:04d}" for n in range(CUSTOMERS)]
            for wa_id in customers:
                await chat.say("STOP", wa_id=wa_id, wait=False)

            def confirmed() -> set[str]:
                return {str(body.get("to")) for body in graph.bodies if isinstance(body, dict)}

            kills = 0
            deadline = time.monotonic() + 90
            # Kill the database's connections while the STOPs are worked through and answered.
            while time.monotonic() < deadline and (kills < 5 or len(confirmed()) < CUSTOMERS):
                await _terminate_backends(database_url)
                kills += 1
                await asyncio.sleep(0.25)
            assert set(customers) <= confirmed(), (
                f"{len(set(customers) & confirmed())} of {CUSTOMERS} confirmations went out"
            )

            metrics = chat.services.metrics
            restarts = metrics.total(metrics.task_restarts)
            assert restarts > 0, "no task was restarted: the connections were never missed"

            status, body = 0, {}
            while time.monotonic() < deadline:
                response = await chat.client.get("/healthz")
                status, body = response.status, await response.json()
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert status == 200, body
            tasks = {task["task"]: task["state"] for task in body["tasks"]}
            assert tasks["sender"] == "ok" and tasks["inbound-worker"] == "ok", tasks
