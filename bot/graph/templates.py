"""Reading the WhatsApp Business Account's template list: `GET /{WABA id}/message_templates`.

The service sends templates it did not write: a business names one in `/v1/messages` or a
campaign, and only Meta knows its category and components. This client reads the whole list
(name, language, category, components, status), page by page: Meta answers `limit` templates
at a time with `paging.next`, the URL of the next page, and leaves `next` out on the last one.
A `next` URL is followed only when it points at the Graph API this client was given (the
access token goes with it); at most `max_pages` pages are read, so a broken `next` that loops
cannot hold a request forever.

Any failure (no connection, a timeout, Meta's error answer, a body that is not a page of the
list) is one `TemplateListError` naming what went wrong; the caller decides what an unreadable
list means (`bot.message_templates.catalog`).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import aiohttp

from bot.graph.client import DEFAULT_TIMEOUT
from bot.graph.errors import GraphError, error_from_body

FIELDS: Final = "name,language,category,components,status"
PAGE_SIZE: Final = 100
MAX_PAGES: Final = 200


class TemplateListError(RuntimeError):
    """The template list could not be read; the message says why."""


class TemplateListClient:
    """Reads `{base_url}/{waba_id}/message_templates` with the business's access token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        waba_id: str,
        access_token: str,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._origin = _origin(self._base)
        query = urlencode({"fields": FIELDS, "limit": page_size})
        self.first_url = f"{self._base}/{waba_id}/message_templates?{query}"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._timeout = timeout
        self._max_pages = max_pages

    async def fetch_all(self) -> list[dict[str, Any]]:
        """Every template of the account, in Meta's order; raises `TemplateListError`."""
        templates: list[dict[str, Any]] = []
        url: str | None = self.first_url
        pages = 0
        while url is not None:
            pages += 1
            if pages > self._max_pages:
                raise TemplateListError(
                    f"the template list has more than {self._max_pages} pages: its paging loops?"
                )
            page = await self._page(url)
            templates.extend(item for item in page["data"] if isinstance(item, dict))
            url = _next_url(page, self._origin)
        return templates

    async def _page(self, url: str) -> dict[str, Any]:
        try:
            async with self._session.get(
                url, headers=self._headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemplateListError(f"could not read the template list: {exc!r}") from exc
        try:
            parsed: object = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if not 200 <= status < 300 or (isinstance(parsed, dict) and "error" in parsed):
            error: GraphError = error_from_body(status, parsed)
            raise TemplateListError(f"Meta refused to list the templates: {error}") from error
        if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
            raise TemplateListError(f"the template list answer (HTTP {status}) has no `data` array")
        return parsed


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _next_url(page: dict[str, Any], origin: tuple[str, str]) -> str | None:
    paging = page.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    if not isinstance(following, str) or not following:
        return None
    if _origin(following) != origin:
        raise TemplateListError(
            f"the template list's next page is on another host ({urlsplit(following).netloc}): "
            "not sending the access token there"
        )
    return following
