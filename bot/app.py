"""The aiohttp application: routes plus a `cleanup_ctx` that opens the services and runs the loops.

`create_app` is used by `optin-bot serve` / `web` and by the tests, so the tests run exactly the
wiring that production runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web

from bot import api, console, health, sandbox, webhook
from bot.api.auth import require_token
from bot.appkeys import SERVICES, SETTINGS
from bot.roles import ALL_ROLES, Role, start_loops
from bot.services import open_services
from bot.settings import Settings
from bot.web import setup_templates

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    roles: Iterable[Role] = ALL_ROLES,
    auto_migrate: bool = True,
) -> web.Application:
    app = web.Application(client_max_size=webhook.MAX_BODY_BYTES + 1, middlewares=[require_token])
    app[SETTINGS] = settings
    loop_roles = frozenset(roles) - {Role.WEB}

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, auto_migrate=auto_migrate) as services:
            app[SERVICES] = services
            stop = asyncio.Event()
            tasks = start_loops(services, loop_roles, stop)
            yield
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=10)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                except Exception:
                    log.exception("%s ended with an error", task.get_name())

    app.cleanup_ctx.append(services_ctx)
    setup_templates(app, sandbox.TEMPLATES_DIR, console.TEMPLATES_DIR)
    webhook.add_routes(app)
    health.add_routes(app)
    api.add_routes(app)
    sandbox.add_routes(app, settings)
    console.add_routes(app)
    app.router.add_get("/", _home(settings))
    return app


def _home(settings: Settings) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`/` opens the sandbox chat in sandbox mode, the agents' console otherwise."""
    target = "/sandbox" if settings.sandbox else "/console"

    async def home(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target)

    return home
