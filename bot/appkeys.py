"""Typed keys under which the composition root hands services to the request handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.roles import Loops
    from bot.services import Services
    from bot.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SERVICES: web.AppKey[Services] = web.AppKey("services")
#: The supervised loops of this process (set while the app runs).
LOOPS: web.AppKey[Loops] = web.AppKey("loops")
