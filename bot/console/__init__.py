"""The agents' console (`/console`): search contacts, read what the bot did with one of them,
withdraw a category on their spoken request or ask them again for consent, follow campaigns,
and read the flows.

Plain server-rendered HTML (Jinja2 through aiohttp-jinja2, templates in `templates/console/`)
with a little JavaScript for the flow diagram only; its assets are served by the app from
`/console/static/`. Who may use it and how every request is checked: `bot.console.auth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from bot.console import (
    actions,
    auth,
    campaigns_page,
    contact_page,
    flows_page,
    optouts_page,
    search,
)

CONSOLE_DIR: Final = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = CONSOLE_DIR / "templates"
STATIC_DIR: Final = CONSOLE_DIR / "static"
STATIC_PREFIX: Final = "/console/static/"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", search.search_page)
    auth.add_routes(app)
    contact_page.add_routes(app)
    actions.add_routes(app)
    flows_page.add_routes(app)
    campaigns_page.add_routes(app)
    optouts_page.add_routes(app)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="console_static", append_version=False)
