"""Server-rendered pages (the agents' console and the sandbox chat): one Jinja2 environment,
one static route, no build step and no external CDN.

Templates live next to the code that renders them (`bot/<area>/templates`), found through one
loader, so each area owns its pages while they share `bot/web/templates/base.html` and
`bot/web/static/`. Autoescaping is on for every template: customer-written text is shown, never
run.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent
STATIC_PREFIX = "/static/"


def setup_templates(app: web.Application, *template_dirs: Path) -> None:
    """Install the Jinja2 environment for `bot/web/templates` plus the areas' own folders."""
    loader = jinja2.FileSystemLoader([str(WEB_DIR / "templates"), *map(str, template_dirs)])
    env = aiohttp_jinja2.setup(
        app,
        loader=loader,
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static"] = lambda path: STATIC_PREFIX + path.lstrip("/")
    app.router.add_static(STATIC_PREFIX, WEB_DIR / "static", name="static", append_version=False)
    # Browsers ask for /favicon.ico on every page whatever the page links; answer it rather than
    # fill the logs with 404s.
    app.router.add_get("/favicon.ico", _favicon)


async def _favicon(_: web.Request) -> web.FileResponse:
    return web.FileResponse(
        WEB_DIR / "static" / "favicon.ico",
        headers={"Content-Type": "image/x-icon", "Cache-Control": "public, max-age=86400"},
    )
