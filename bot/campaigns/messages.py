"""What a campaign puts on the queues for one recipient: the re-consent request for the flow,
and the template message for the sender.

Both are keyed by the recipient's own id, so redoing them after a crash is a no-op (the inbound
queue de-duplicates on the event id, the outbound queue on the message id). The message id is
also sent to Meta as `biz_opaque_callback_data`, which Meta echoes in every status webhook of the
message: that is how a status finds its recipient without a lookup, in any process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bot.campaigns.spec import BUSINESS_NAME_TOKEN
from bot.graph import Recipient, body_component, quick_reply_component, template_message
from bot.outbound import OutboundMessage
from flows import events as ev
from flows.consent import Source

_TAG = re.compile(r"^campaign:(\d+):(\d+)$")


@dataclass(frozen=True, slots=True)
class RecipientRef:
    """A recipient as the dispatcher handles it: ids and the contact's current identifiers."""

    recipient_id: int
    campaign_id: int
    contact_id: int
    wa_id: str | None
    user_id: str | None
    locale: str | None = None  # the contact's recorded language, if known


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    """The campaign's template and the business it speaks for."""

    campaign_id: int
    name: str
    language: str
    buttons: tuple[str, ...]
    body_parameters: tuple[str, ...]
    business_name: str
    phone_number_id: str
    # TEMPLATE_LANGUAGES: the template language of each contact locale the business listed.
    languages: Mapping[str, str] = field(default_factory=dict)
    # The languages the account's template list holds of this template; None when unknown.
    available: frozenset[str] | None = None

    def choose_language(self, who: RecipientRef) -> tuple[str, str | None]:
        """The recipient's language when TEMPLATE_LANGUAGES lists their locale (a Spanish
        customer gets the Spanish template) and the template list holds it, else the
        campaign's template language; with it, why the contact's own language was not used
        (None when it was, or when the campaign's language is theirs)."""
        locale = who.locale
        if locale is None:
            return self.language, "the contact's language is not known"
        mapped = self.languages.get(locale)
        if mapped is None:
            if self.language.split("_")[0].lower() == locale:
                return self.language, None
            return self.language, f"TEMPLATE_LANGUAGES lists no template language for {locale}"
        if self.available is not None and mapped not in self.available:
            return self.language, (
                f"TEMPLATE_LANGUAGES gives {mapped} for {locale}, but the template list holds "
                f"no {mapped} version of {self.name}"
            )
        return mapped, None

    def language_for(self, who: RecipientRef) -> str:
        """The language `choose_language` picks."""
        return self.choose_language(who)[0]


def message_id(campaign_id: int, recipient_id: int) -> str:
    """The outbound message id (and Meta callback tag) of one recipient's message."""
    return f"campaign:{campaign_id}:{recipient_id}"


def parse_message_id(value: str | None) -> tuple[int, int] | None:
    """(campaign id, recipient id) of a campaign message id or callback tag, else None."""
    match = _TAG.match(value or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def template_outbound(
    template: TemplateSettings, who: RecipientRef, categories: tuple[str, ...]
) -> OutboundMessage:
    """The template message for one recipient, addressed by wa_id (else BSUID)."""
    parameters = [
        p.replace(BUSINESS_NAME_TOKEN, template.business_name) for p in template.body_parameters
    ]
    components = [body_component(*parameters)] if parameters else []
    components += [quick_reply_component(i, p) for i, p in enumerate(template.buttons)]
    mid = message_id(who.campaign_id, who.recipient_id)
    language = template.language_for(who)
    body = template_message(
        Recipient(wa_id=who.wa_id, user_id=None if who.wa_id else who.user_id),
        template.name,
        language,
        components,
    )
    body["biz_opaque_callback_data"] = mid
    return OutboundMessage(
        message_id=mid,
        contact_id=who.contact_id,
        body=body,
        kind="template",
        category=categories[0] if categories else None,
        text=f"[template {template.name} ({language}): re-consent, campaign "
        f"{template.campaign_id}]",
        meta={
            "purpose": "business",
            "campaign_id": str(who.campaign_id),
            "recipient_id": str(who.recipient_id),
            "wa_id": who.wa_id or "",
            "user_id": who.user_id or "",
        },
    )


def reconsent_request(
    template: TemplateSettings,
    who: RecipientRef,
    categories: tuple[str, ...],
    *,
    policy_version: str,
    deadline: datetime,
    deadline_policy: str,
    now: datetime,
) -> ev.ConsentRequest:
    """The request that puts the contact's conversation into awaiting_reconsent until the
    deadline, for exactly the categories the message asks about."""
    return ev.ConsentRequest(
        event_id=f"{message_id(who.campaign_id, who.recipient_id)}:request",
        phone_number_id=template.phone_number_id,
        occurred_at=now,
        contact=ev.ContactRef(wa_id=who.wa_id, user_id=who.user_id),
        contact_id=who.contact_id,
        kind="reconsent",
        categories=categories,
        source=Source.API.value,
        evidence_json=json.dumps(
            {
                "campaign_id": str(who.campaign_id),
                "template": template.name,
                "template_language": template.language_for(who),
            },
            sort_keys=True,
        ),
        policy_version=policy_version,
        deadline=deadline,
        deadline_policy=deadline_policy,
        prompt_id=message_id(who.campaign_id, who.recipient_id),
    )
