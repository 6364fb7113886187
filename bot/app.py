"""The aiohttp application: routes plus a `cleanup_ctx` that opens the services and runs the loops.

`create_app` is used by `optin-bot serve` / `web` and by the tests, so the tests run exactly the
wiring that production runs.

Connection limits travel with the app (`handler_args` and a startup hook), so every way of
serving it (`web.run_app` in `bot.cli`, the `AppRunner`s of `serve --workers`) gets them:
an idle or unfinished connection is closed after `IDLE_CONNECTION_SECONDS`, and the process may
hold as many sockets as its hard open-file limit allows (see `raise_open_file_limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web

from bot import api, console, health, sandbox, webhook
from bot.api.auth import require_token
from bot.api.unavailable import unavailable_while_storage_is_down
from bot.appkeys import LOOPS, SERVICES, SETTINGS
from bot.durable_ack import persist_before_acknowledging
from bot.roles import ALL_ROLES, Role, supervise_loops
from bot.services import open_services
from bot.settings import Settings
from bot.web import setup_templates

log = logging.getLogger(__name__)

#: Seconds a connection may sit without a request being handled: idle between keep-alive
#: requests, or still sending its first request's headers (a slow-loris client). aiohttp's own
#: default is an hour for an `AppRunner` (75 s under `run_app`); with thousands of idle sockets an
#: hour is too long, and Meta opens a new connection whenever one was closed.
IDLE_CONNECTION_SECONDS = 30.0


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the new limit.

    Every connection is a file descriptor, and the usual soft limit (1024) would make the server
    refuse connections long before memory or CPU run short. The hard limit is the
    administrator's ceiling and stays as it is.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # e.g. above fs.nr_open
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def create_app(
    settings: Settings,
    *,
    roles: Iterable[Role] = ALL_ROLES,
    auto_migrate: bool = True,
    on_give_up: Callable[[], None] | None = None,
) -> web.Application:
    """`on_give_up` is called when a loop is given up on (`bot.supervisor`): the server must
    then stop and the process exit non-zero (`app[LOOPS].failed` says so afterwards)."""
    app = web.Application(
        client_max_size=webhook.MAX_BODY_BYTES + 1,
        middlewares=[
            unavailable_while_storage_is_down,
            require_token,
            persist_before_acknowledging,
        ],
        handler_args={"keepalive_timeout": IDLE_CONNECTION_SECONDS},
    )
    app[SETTINGS] = settings
    loop_roles = frozenset(roles) - {Role.WEB}

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, auto_migrate=auto_migrate) as services:
            app[SERVICES] = services
            stop = asyncio.Event()
            loops = supervise_loops(services, loop_roles, stop)
            app[LOOPS] = loops
            tasks = loops.tasks
            if on_give_up is not None:
                watcher = on_give_up

                async def watch() -> None:
                    await stop.wait()
                    if loops.failed:
                        watcher()

                tasks = [*tasks, asyncio.create_task(watch(), name="give-up-watch")]
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

    app.on_startup.append(_open_file_limit)
    app.cleanup_ctx.append(services_ctx)
    setup_templates(app, sandbox.TEMPLATES_DIR, console.TEMPLATES_DIR)
    webhook.add_routes(app)
    health.add_routes(app)
    api.add_routes(app)
    sandbox.add_routes(app, settings)
    console.add_routes(app)
    app.router.add_get("/", _home(settings))
    return app


async def _open_file_limit(_: web.Application) -> None:
    log.debug("open-file limit: %d", raise_open_file_limit())


def _home(settings: Settings) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`/` opens the sandbox chat in sandbox mode, the agents' console otherwise."""
    target = "/sandbox" if settings.sandbox else "/console"

    async def home(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target)

    return home
