"""What a business may write to name a contact, turned into the identifiers we store.

Businesses hold phone numbers in every shape (`+34 612 34 56 78`, `0034…` copied from a CRM,
bare digits as WhatsApp's `wa_id`); Meta identifies customers by the digits of the E.164 number,
or, for customers known only by a username, by a business-scoped user id (BSUID,
`CC.digits`, where `CC` is the ISO 3166 country of the account). Parsing goes through the
`phonenumbers` library, so a number that cannot exist is refused before it reaches the ledger,
and the country it belongs to (which decides which consent rules apply) is known.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

import phonenumbers

_BSUID: Final = re.compile(r"^([A-Z]{2})\.[A-Za-z0-9]{1,64}$")
_PHONE_CHARACTERS: Final = re.compile(r"^\+?[0-9 ()./-]{1,32}$")

#: The European Union and the other EEA states (Iceland, Liechtenstein, Norway), with the EU's
#: outermost regions that have their own region codes in the numbering plan.
EU_EEA_REGIONS: Final = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        "IS", "LI", "NO",
        "AX", "GF", "GP", "MQ", "RE", "YT", "MF",
    }
)  # fmt: skip


#: The longest `{contact}` a route looks up (a BSUID is at most 128 characters, a wa_id 20).
MAX_CONTACT_PARAMETER: Final = 128
#: Unicode categories never found in an id: control, format, surrogate, line/paragraph separator.
_NOT_IN_IDS: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def contact_parameter_problem(text: str) -> str | None:
    """Why `{contact}` of a `/v1/contacts/{contact}…` route cannot name any contact, or None.

    Ids are digits or `CC.digits`, so NUL and other control characters (PostgreSQL refuses NUL
    outright, which made these routes answer 500), path characters (`/`, `\\`, `..`) and
    overlong text are refused before any lookup; the route answers 400 `invalid_contact_id`.
    """
    if not text or len(text) > MAX_CONTACT_PARAMETER:
        return f"a contact id is 1 to {MAX_CONTACT_PARAMETER} characters"
    if "/" in text or "\\" in text or ".." in text:
        return "a contact id holds no path characters (/, \\, ..)"
    if any(unicodedata.category(char) in _NOT_IN_IDS for char in text):
        return "a contact id holds no control or invisible characters"
    return None


class IdentifierError(ValueError):
    """The text does not name a contact; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class ContactIdentifier:
    """A contact named by the business: exactly one of `wa_id` / `user_id`, and its country."""

    wa_id: str | None
    user_id: str | None
    region: str | None

    @property
    def value(self) -> str:
        """The identifier as stored and as `/v1/contacts/{contact}` takes it."""
        return self.wa_id or self.user_id or ""

    @property
    def in_eu_eea(self) -> bool:
        return self.region in EU_EEA_REGIONS


def _phone(text: str) -> phonenumbers.PhoneNumber:
    if not _PHONE_CHARACTERS.match(text):
        raise IdentifierError(
            f"{text[:40]!r} is neither a phone number (E.164, e.g. +34612345678, or the wa_id "
            "digits) nor a business-scoped user id (e.g. US.13491208655302741918)"
        )
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith("00"):
        digits = digits[2:]
    try:
        return phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise IdentifierError(f"{text[:40]!r} is not a phone number: {exc}") from None


def parse_contact(text: str) -> ContactIdentifier:
    """A new contact's identifier, strictly: the number must be a valid one in its country.

    `+34 612 34 56 78`, `0034612345678` and `34612345678` all give wa_id `34612345678`;
    `ES.1234` gives user_id `ES.1234` (its country must be a known region code).
    """
    text = text.strip()
    bsuid = _BSUID.match(text)
    if bsuid is not None:
        region = bsuid.group(1)
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise IdentifierError(f"{region!r} in {text!r} is not an ISO 3166 country code")
        return ContactIdentifier(wa_id=None, user_id=text, region=region)
    number = _phone(text)
    if not phonenumbers.is_valid_number(number):
        raise IdentifierError(
            f"{text[:40]!r} is not a valid phone number: give it in E.164 form with its "
            "country code, e.g. +34612345678"
        )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return ContactIdentifier(
        wa_id=e164.lstrip("+"), user_id=None, region=phonenumbers.region_code_for_number(number)
    )


def lookup_key(text: str) -> str:
    """The identifier to look an existing contact up by, leniently.

    A contact we already know was named by Meta, so its number is taken as written (only the
    formatting is removed) even where the numbering plan would call it invalid.
    """
    text = text.strip()
    if _BSUID.match(text):
        return text
    if _PHONE_CHARACTERS.match(text):
        digits = re.sub(r"[^0-9]", "", text)
        digits = digits[2:] if text.startswith("00") else digits
        if digits:
            return digits
    raise IdentifierError(
        f"{text[:40]!r} is neither a wa_id / phone number nor a business-scoped user id"
    )
