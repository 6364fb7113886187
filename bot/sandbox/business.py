"""The sandbox's "business" side: ask a sandbox customer for a double opt-in, or ask every
sandbox customer to re-consent.

The double opt-in is a real `POST /v1/optins` with `double_opt_in: true`, over HTTP, so the
business API's own checks answer (a contact who opted out, a closed window without
OPTIN_TEMPLATE) and the person trying the bot sees what an integration would get.
The re-consent is a real campaign (`POST /v1/campaigns`, then `/start`) whose audience is the
sandbox's numbers: the dispatcher sends the re-consent template to those opted in, and the
customer answers with its quick-reply buttons. The sandbox remembers which numbers were played
in it (a Redis set): those are "the sandbox contacts".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import redis_keys
from bot.message_templates.sandbox import SANDBOX_RECONSENT_TEMPLATE
from bot.sandbox.relay import LoopbackClient
from bot.services import Services
from flows.consent import Source

SANDBOX_CONTACTS_KEY = redis_keys.SANDBOX_CONTACTS.name
OPTINS_PATH = "/v1/optins"
CAMPAIGNS_PATH = "/v1/campaigns"
RECONSENT_DEADLINE = timedelta(days=30)
EVIDENCE = {"requested_by": "sandbox business panel"}


class RequestError(ValueError):
    """The request cannot be made as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Requested:
    """How many contacts were asked, and what the API named the request (`request:…` of a
    double opt-in, `campaign:<id>` of a campaign)."""

    contacts: int
    references: tuple[str, ...]


async def remember_contact(services: Services, wa_id: str) -> None:
    await services.redis.sadd(SANDBOX_CONTACTS_KEY, wa_id)


async def sandbox_numbers(services: Services) -> list[str]:
    members = await services.redis.smembers(SANDBOX_CONTACTS_KEY)
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def checked_categories(services: Services, categories: Sequence[str]) -> tuple[str, ...]:
    known = [c.name for c in services.language.categories]
    unknown = sorted(set(categories) - set(known))
    if unknown:
        raise RequestError(f"unknown categories: {', '.join(unknown)}")
    chosen = tuple(c for c in known if c in categories)
    if not chosen:
        raise RequestError("choose at least one category")
    return chosen


def next_policy_version(current: str) -> str:
    """The version a re-consent would move to: "1" -> "2", "2.1" -> "3" (else unchanged)."""
    major = current.strip().split(".")[0]
    return str(int(major) + 1) if major.isdigit() else current


def optin_body(
    services: Services, wa_id: str, categories: tuple[str, ...], locale: str | None
) -> dict[str, Any]:
    """The `POST /v1/optins` body a business sends to start a double opt-in."""
    settings = services.settings
    catalog = services.language.catalogs[locale or services.language.default_locale]
    body: dict[str, Any] = {
        "contact": wa_id,
        "categories": list(categories),
        "source": Source.API.value,
        "wording": f"{settings.business_name} would like to send you "
        f"{catalog.join_categories(categories)} on WhatsApp.",
        "business_name": settings.business_name,
        "captured_at": datetime.now(UTC).isoformat(),
        "evidence": EVIDENCE,
        "double_opt_in": True,
    }
    if locale is not None:
        body["locale"] = locale
    return body


async def request_optin(
    services: Services,
    client: LoopbackClient,
    base_url: str,
    wa_id: str,
    categories: Sequence[str],
) -> Requested:
    """Ask `wa_id` to confirm `categories` through the business API (the bot then sends the
    opt-in prompt); the API's refusal is raised as `RequestError`."""
    chosen = checked_categories(services, categories)
    contact = await services.contacts.find(wa_id)
    locale = contact.locale if contact is not None else None
    result = await client.api(
        base_url,
        OPTINS_PATH,
        optin_body(services, wa_id, chosen, locale),
        idempotency_key=uuid.uuid4().hex,
    )
    if not result.accepted:
        raise RequestError(result.problem)
    return Requested(1, (str(result.answer.get("request_id", "")),))


def campaign_body(
    services: Services,
    numbers: Sequence[str],
    categories: tuple[str, ...],
    policy_version: str,
) -> dict[str, Any]:
    """The `POST /v1/campaigns` body: re-consent of the sandbox customers by a deadline."""
    settings = services.settings
    return {
        "name": f"Sandbox re-consent to policy {policy_version}",
        "template": {
            "name": settings.reconsent_template or SANDBOX_RECONSENT_TEMPLATE,
            "language": settings.template_language(services.language.default_locale),
        },
        "audience": {"categories": list(categories), "contacts": list(numbers)},
        "policy_version": policy_version,
        "deadline": (datetime.now(UTC) + RECONSENT_DEADLINE).isoformat(),
    }


async def request_reconsent(
    services: Services,
    client: LoopbackClient,
    base_url: str,
    categories: Sequence[str],
    policy_version: str,
) -> Requested:
    """Create and start a re-consent campaign for the sandbox customers through the business
    API; its dispatcher then sends the template to those opted in to one of `categories`."""
    chosen = checked_categories(services, categories)
    numbers = await sandbox_numbers(services)
    if not numbers:
        raise RequestError("no sandbox customer yet: start a chat first")
    created = await client.api(
        base_url,
        CAMPAIGNS_PATH,
        campaign_body(services, numbers, chosen, policy_version.strip()),
        idempotency_key=uuid.uuid4().hex,
    )
    if not created.accepted:
        raise RequestError(created.problem)
    campaign_id = created.answer.get("id")
    started = await client.api(
        base_url, f"{CAMPAIGNS_PATH}/{campaign_id}/start", {}, idempotency_key=uuid.uuid4().hex
    )
    if not started.accepted:
        raise RequestError(started.problem)
    listed = created.answer.get("listed", {}).get("recipients", len(numbers))
    return Requested(int(listed), (f"campaign:{campaign_id}",))
