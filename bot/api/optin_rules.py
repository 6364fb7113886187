"""What makes an opt-in recorded through the API valid consent, as rules without I/O.

Consent must be given actively (no pre-ticked box), freely (not a condition of signing up), to a
named business, for purposes the business really has, at a real moment. A wording that does not
name WhatsApp satisfies Meta since November 2024, but the GDPR asks for consent specific to the
channel, so such a wording is refused for contacts in the EU/EEA (unless the business chose
`GENERIC_OPTIN_POLICY=accept`) and accepted but flagged everywhere else. A double opt-in is
exempt: the confirmation in the chat names WhatsApp and the business itself.

`check_optin` turns a schema-valid body into a `CheckedOptin` or raises `ApiProblem` with the
contract's reason code; `bot.api.optins` then records it or asks for the confirmation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.api.idempotency import canonical_hash
from bot.api.identifiers import ContactIdentifier, IdentifierError, parse_contact
from bot.api.validation import ApiProblem
from bot.db.ledger_append import EvidenceValue
from flows.consent import Source

#: Where an opt-in recorded through the API may have been captured.
OFF_WHATSAPP_SOURCES: Final = (
    Source.WEBSITE,
    Source.SMS,
    Source.EMAIL,
    Source.IVR,
    Source.PAPER,
    Source.IN_PERSON,
    Source.QR_CODE,
    Source.CTWA_AD,
    Source.API,
)
#: How far in the future `captured_at` may be (clocks differ a little).
CLOCK_SKEW: Final = timedelta(minutes=5)
#: "WhatsApp" as people write it, in Latin and the scripts of the bundled locales.
_NAMES_WHATSAPP: Final = re.compile(
    r"whats\s*-?\s*app|واتس\s*اب|واتساب|वॉट्सऐप|व्हाट्सएप|व्हाट्सऐप|ватсап|вотсап",
    re.IGNORECASE,
)
#: Evidence keys the service writes itself; a business's evidence may not use them.
RESERVED_EVIDENCE_KEYS: Final = (
    "wording",
    "captured_at",
    "contact_as_given",
    "region",
    "locale",
    "pre_ticked",
    "required_for_signup",
    "generic_wording",
    "previous_status",
    "lifts_opt_out",
    "double_opt_in",
)


@dataclass(frozen=True, slots=True)
class CheckedOptin:
    """An opt-in that passed every rule, normalised; `fingerprint` identifies the request
    (the same opt-in, however its number was written, has the same fingerprint)."""

    identifier: ContactIdentifier
    categories: tuple[str, ...]
    source: Source
    business_name: str
    captured_at: datetime
    locale: str | None
    policy_version: str
    double_opt_in: bool
    generic_wording: bool
    evidence: Mapping[str, EvidenceValue]
    fingerprint: str


def names_whatsapp(wording: str) -> bool:
    """Does the wording name WhatsApp (so the customer knew the channel they agreed to)?"""
    return _NAMES_WHATSAPP.search(wording) is not None


def parse_captured_at(text: str, now: datetime) -> datetime:
    """`captured_at` in UTC: ISO 8601 with a time zone, not in the future."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ApiProblem(
                422, "invalid_captured_at", "`captured_at` needs a time zone (e.g. Z or +02:00)"
            )
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiProblem(
            422, "invalid_captured_at", "`captured_at` is not an ISO 8601 date and time"
        ) from None
    if moment > now + CLOCK_SKEW:
        raise ApiProblem(422, "invalid_captured_at", "`captured_at` is in the future")
    return moment


def pick_locale(text: str | None, locales: Collection[str]) -> str | None:
    """The bundled locale `text` names (`pt-BR` is `pt` when only `pt` exists)."""
    if text is None:
        return None
    code = text.lower().replace("-", "_")
    for candidate in (code, code.split("_", 1)[0]):
        if candidate in locales:
            return candidate
    raise ApiProblem(
        422, "unknown_locale", f"no locale {text!r}; known: {', '.join(sorted(locales))}"
    )


def _check_freely_given(body: Mapping[str, Any], categories: Collection[str]) -> None:
    if body.get("pre_ticked"):
        raise ApiProblem(
            422, "pre_ticked", "a pre-ticked box is not consent: the customer must tick it"
        )
    if body.get("required_for_signup"):
        raise ApiProblem(
            422, "required_for_signup", "consent made a condition of signing up is not freely given"
        )
    if not str(body["business_name"]).strip():
        raise ApiProblem(
            422, "no_business_name", "`business_name`: the name shown to the customer is required"
        )
    if not str(body["wording"]).strip():
        raise ApiProblem(422, "invalid_request", "`wording` must not be blank")
    unknown = [c for c in body["categories"] if c not in categories]
    if unknown:
        raise ApiProblem(
            422,
            "unknown_category",
            f"unknown categories {', '.join(unknown)}; known: {', '.join(sorted(categories))}",
        )
    ip = body["evidence"].get("ip")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ApiProblem(422, "invalid_request", "`evidence.ip` is not an IP address") from None


def _identifier(text: str) -> ContactIdentifier:
    try:
        return parse_contact(text)
    except IdentifierError as exc:
        raise ApiProblem(422, "invalid_contact", str(exc)) from None


def check_optin(
    body: Mapping[str, Any],
    *,
    categories: Collection[str],
    locales: Collection[str],
    generic_policy: str,
    policy_version: str,
    now: datetime,
) -> CheckedOptin:
    """Apply the rules to a schema-valid `OptinRequest` body (raises `ApiProblem`)."""
    _check_freely_given(body, categories)
    identifier = _identifier(body["contact"])
    captured_at = parse_captured_at(body["captured_at"], now)
    locale = pick_locale(body.get("locale"), locales)
    double_opt_in = bool(body.get("double_opt_in"))
    generic = not names_whatsapp(body["wording"])
    if generic and identifier.in_eu_eea and not double_opt_in and generic_policy != "accept":
        raise ApiProblem(
            422,
            "generic_wording",
            f"the contact's number is in the EU/EEA ({identifier.region}), where consent must "
            "name the channel: the wording does not mention WhatsApp (GENERIC_OPTIN_POLICY="
            "accept records it anyway)",
        )
    evidence: dict[str, EvidenceValue] = dict(body["evidence"])
    evidence.update(
        wording=body["wording"],
        captured_at=captured_at.isoformat(),
        contact_as_given=body["contact"],
        region=identifier.region,
        pre_ticked=False,
        required_for_signup=False,
    )
    if locale is not None:
        evidence["locale"] = locale
    if generic:
        evidence["generic_wording"] = True
    normalised = {
        **body,
        "contact": identifier.value,
        "captured_at": captured_at.isoformat(),
        "categories": sorted(body["categories"]),
    }
    return CheckedOptin(
        identifier=identifier,
        categories=tuple(body["categories"]),
        source=Source(body["source"]),
        business_name=str(body["business_name"]).strip(),
        captured_at=captured_at,
        locale=locale,
        policy_version=body.get("policy_version") or policy_version,
        double_opt_in=double_opt_in,
        generic_wording=generic,
        evidence=evidence,
        fingerprint=canonical_hash(normalised),
    )
