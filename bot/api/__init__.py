"""The business API under `/v1` (bearer `API_TOKEN`).

Each module registers its own routes and describes them for the OpenAPI document
(`OPENAPI_PATHS`, `OPENAPI_SCHEMAS`), so a route and its description live side by side.
"""

from __future__ import annotations

from aiohttp import web

from bot.api import (
    campaigns,
    contacts,
    crm,
    dead,
    keywords,
    messages,
    openapi,
    optins,
    records,
)


def add_routes(app: web.Application) -> None:
    contacts.add_routes(app)
    campaigns.add_routes(app)
    optins.add_routes(app)
    messages.add_routes(app)
    crm.add_routes(app)
    dead.add_routes(app)
    keywords.add_routes(app)
    records.add_routes(app)
    openapi.add_routes(app)
