"""`GET /healthz` and `GET /metrics`."""

from __future__ import annotations

import contextlib
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from bot.appkeys import SERVICES, SETTINGS
from bot.db.engine import ping
from bot.redisconn import redis_ok
from bot.streams import queue_depths

VERSION = "0.1.0"


async def healthz(request: web.Request) -> web.Response:
    """200 with `status: ok` when Redis and the database answer; 503 with what is down otherwise."""
    services = request.app[SERVICES]
    settings = request.app[SETTINGS]
    redis_up = await redis_ok(services.redis)
    db_up = await ping(services.engine)
    healthy = redis_up and db_up
    body = {
        "status": "ok" if healthy else "unavailable",
        "mode": "sandbox" if settings.sandbox else "live",
        "redis": {"status": "ok" if redis_up else "down", "embedded": settings.embedded_redis},
        "database": {"status": "ok" if db_up else "down", "embedded": settings.embedded_database},
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
