"""Campaign operations shared by the business API and the command line.

Both talk to the same repository (the command line needs no running server): create from the
JSON form (`bot.campaigns.spec`), start / pause / resume with the allowed transitions, and the
report of `bot.campaigns.report`.

A campaign's template must carry a way out when it is MARKETING: it is checked against the
account's template list (`bot.message_templates`) when the campaign is created, started and
resumed (the list may have changed meanwhile), in its own language and in every language
`TEMPLATE_LANGUAGES` may choose for a recipient that the list holds. A refusal raises
`TemplateRefused`, which the API and the command line report with its code and detail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.campaigns.models import Campaign
from bot.campaigns.report import report_json, snapshot, summary_json
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.spec import SpecError, spec_from_json
from bot.campaigns.throttle import Throttle
from bot.message_templates import TemplateGuard

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Created:
    """A new campaign, and the listed contacts that are not known (not made recipients)."""

    campaign: Campaign
    listed: int
    unknown: tuple[str, ...]


class CampaignService:
    def __init__(
        self,
        repository: CampaignRepository,
        throttle: Throttle,
        *,
        categories: Iterable[str],
        default_optout_threshold: float,
        templates: TemplateGuard | None = None,
        template_languages: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.repository = repository
        self._throttle = throttle
        self._categories = tuple(categories)
        self._threshold = default_optout_threshold
        self._templates = templates
        self._languages = dict(template_languages or {})
        self._clock = clock

    async def check_template(self, name: str, language: str) -> None:
        """Refuse (`TemplateRefused`) a template some recipient would get without a way out."""
        guard = self._templates
        if guard is None:
            return
        await guard.check(name, language)
        listed = await guard.languages(name)
        if listed is None:
            return
        for other in sorted((set(self._languages.values()) & listed) - {language}):
            await guard.check(name, other)

    async def create(self, data: object) -> Created:
        """Validate and store a draft campaign; raises SpecError, or TemplateRefused for a
        template without a way out."""
        now = self._clock()
        spec = spec_from_json(
            data,
            categories=self._categories,
            now=now,
            default_optout_threshold=self._threshold,
        )
        await self.check_template(spec.template.name, spec.template.language)
        contact_ids: list[int] | None = None
        unknown: list[str] = []
        if spec.contacts is not None:
            contact_ids, unknown = await self.repository.resolve_identifiers(spec.contacts)
            if not contact_ids:
                raise SpecError(
                    "audience.contacts", f"none of the {len(spec.contacts)} contacts is known"
                )
        campaign = await self.repository.create(spec, contact_ids=contact_ids, now=now)
        return Created(campaign, len(contact_ids or ()), tuple(unknown))

    async def act(self, campaign_id: int, action: str, *, reason: str | None = None) -> Campaign:
        """start | pause | resume; raises LookupError, TransitionError or (start and resume
        of a template without a way out) TemplateRefused."""
        allowed, to = TRANSITIONS[action]
        if action in ("start", "resume"):
            campaign = await self.repository.get(campaign_id)
            if campaign is None:
                raise LookupError(campaign_id)
            if campaign.status in allowed:
                await self.check_template(campaign.template_name, campaign.template_language)
        return await self.repository.transition(
            campaign_id,
            allowed_from=allowed,
            to=to,
            now=self._clock(),
            paused_by="operator" if action == "pause" else None,
            reason=(reason or "paused by the operator") if action == "pause" else None,
        )

    async def report(self, campaign_id: int) -> dict[str, Any] | None:
        campaign = await self.repository.get(campaign_id)
        if campaign is None:
            return None
        now = self._clock()
        return report_json(await snapshot(self.repository, self._throttle, campaign, now))

    async def summaries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        now = self._clock()
        return [summary_json(c, now) for c in await self.repository.recent(limit=limit)]
