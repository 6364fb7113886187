"""`GET /healthz` and `GET /metrics`.

`/healthz` answers for the whole service, not only the process that answers: besides Redis and
the database it reads every task's heartbeat (`bot.heartbeats`), so a dead or stalled `worker`
or `sender` process, which serves no HTTP, makes it 503 too, naming the task."""

from __future__ import annotations

import contextlib
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from bot.appkeys import SERVICES, SETTINGS
from bot.db.engine import ping
from bot.heartbeats import TaskHealth, read_health
from bot.redisconn import redis_ok
from bot.streams import queue_depths

VERSION = "0.1.0"


async def healthz(request: web.Request) -> web.Response:
    """200 with `status: ok` when Redis and the database answer and no task is dead or stalled;
    503 with what is down (`failing` names the tasks) otherwise."""
    services = request.app[SERVICES]
    settings = request.app[SETTINGS]
    redis_up = await redis_ok(services.redis)
    db_up = await ping(services.engine)
    tasks: list[TaskHealth] = []
    if redis_up:
        with contextlib.suppress(RedisError, OSError):
            tasks = await read_health(services.redis, stall_seconds=settings.health_stall_seconds)
    failing = [f"{task.task} ({task.state}: {task.detail})" for task in tasks if not task.healthy]
    healthy = redis_up and db_up and not failing
    body = {
        "status": "ok" if healthy else "unavailable",
        "mode": "sandbox" if settings.sandbox else "live",
        "redis": {"status": "ok" if redis_up else "down", "embedded": settings.embedded_redis},
        "database": {"status": "ok" if db_up else "down", "embedded": settings.embedded_database},
        "tasks": [task.as_dict() for task in tasks],
        "failing": failing,
        "version": VERSION,
        "pid": os.getpid(),  # which process answered: `serve --workers N` shares one port
    }
    return web.json_response(body, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    # When Redis is down the depths keep their last value; /healthz reports Redis as down.
    with contextlib.suppress(RedisError, OSError):
        services.metrics.set_queue_depths(await queue_depths(services.redis))
    response = web.Response(body=services.metrics.render())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
