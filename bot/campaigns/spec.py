"""What a campaign is, validated once for the API and the command line alike.

A campaign asks an audience to reconfirm consent: a Meta template (name, language, quick-reply
buttons whose payloads the re-consent flow reads back as YES / NO), who is asked, the policy
version they reconfirm, a deadline and what it does to the silent ones, and a pace. Everything a
business can get wrong is refused here with the field's path, before anything is stored.

Policy versions are dotted numbers ("2", "2.1", "2026.03"), compared number by number, with
missing parts counting as 0 ("2" == "2.0" < "2.1" < "10"). A stored consent whose policy version
is absent or not such a number counts as older than any version: it predates versioning.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from flows.replies import ids

MAX_RATE: Final = 1000.0
DEFAULT_RATE: Final = 80.0
DEFAULT_BUTTONS: Final = (ids.RECONSENT_YES, ids.RECONSENT_NO)
ALLOWED_BUTTONS: Final = frozenset(DEFAULT_BUTTONS)
DEADLINE_POLICIES: Final = ("lapse", "keep")
BUSINESS_NAME_TOKEN: Final = "{business_name}"

_VERSION = re.compile(r"^\d{1,9}(?:\.\d{1,9}){0,7}$")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?$")
_BSUID = re.compile(r"^[A-Za-z]{2}\.[A-Za-z0-9]+$")
_PHONE_NOISE = re.compile(r"[\s()\-.]")
_CSV_COLUMNS: Final = ("wa_id", "phone", "phone_number", "e164", "msisdn", "user_id", "bsuid")


class SpecError(ValueError):
    """A campaign field has a value the campaign cannot run with; `path` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """The numbers of a dotted version, trailing zeros dropped; None when it is not one."""
    if text is None or not _VERSION.match(text.strip()):
        return None
    parts = [int(p) for p in text.strip().split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_below(stored: str | None, bound: str) -> bool:
    """Whether a consent given under policy `stored` is older than policy `bound`."""
    limit = parse_version(bound)
    if limit is None:
        raise ValueError(f"not a policy version: {bound!r}")
    version = parse_version(stored)
    return version is None or version < limit


def normalise_identifier(value: str) -> str:
    """A wa_id (digits, from E.164 or a plain number) or a BSUID (``CC.xxxx``), as stored."""
    text = value.strip()
    if _BSUID.match(text):
        return text
    digits = _PHONE_NOISE.sub("", text).removeprefix("+")
    if digits.isdigit() and 1 <= len(digits) <= 15:
        return digits
    raise ValueError(f"not a phone number (E.164 or wa_id) or business-scoped user id: {value!r}")


def identifiers_from_csv(text: str) -> list[str]:
    """The contacts a CSV lists, de-duplicated, in order.

    The column is the first one named wa_id, phone, phone_number, e164, msisdn, user_id or
    bsuid when the first row is such a header, else the first column. Blank lines are skipped;
    a value that is neither a number nor a BSUID raises ValueError naming its line.
    """
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    column = 0
    found: dict[str, None] = {}
    for line, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if line == 1:
            header = [cell.lower() for cell in cells]
            named = [i for i, name in enumerate(header) if name in _CSV_COLUMNS]
            if named:
                column = named[0]
                continue
        if column >= len(cells) or not cells[column]:
            raise ValueError(f"CSV line {line}: no contact in column {column + 1}")
        try:
            found[normalise_identifier(cells[column])] = None
        except ValueError as exc:
            raise ValueError(f"CSV line {line}: {exc}") from None
    return list(found)


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """The Meta template sent: `buttons` are quick-reply payloads in button order, and
    `body_parameters` fill the body's variables ("{business_name}" becomes BUSINESS_NAME)."""

    name: str
    language: str
    buttons: tuple[str, ...] = DEFAULT_BUTTONS
    body_parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """A campaign as the business asked for it, validated.

    The audience is every contact opted in to at least one of `categories` whose consent there
    is older than `older_than_days` and was given under a policy below `policy_below` (each
    criterion only when set), restricted to `contacts` when a list was given.
    """

    name: str
    template: TemplateSpec
    categories: tuple[str, ...]
    policy_version: str
    deadline: datetime
    older_than_days: int | None = None
    policy_below: str | None = None
    contacts: tuple[str, ...] | None = None
    on_deadline: str = "lapse"
    rate: float = DEFAULT_RATE
    daily_cap: int | None = None
    optout_threshold: float = 0.02


class _Reader:
    """Reads one JSON object, refusing fields it does not know."""

    def __init__(self, data: object, path: str, allowed: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise SpecError(path or "(body)", "expected a JSON object")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SpecError(_join(path, unknown[0]), "unknown field")
        self.data: Mapping[str, Any] = data
        self.path = path

    def at(self, name: str) -> str:
        return _join(self.path, name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def text(self, name: str, *, required: bool = True, limit: int = 512) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise SpecError(self.at(name), "required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise SpecError(self.at(name), "expected a non-empty string")
        if len(value) > limit:
            raise SpecError(self.at(name), f"at most {limit} characters")
        return value.strip()

    def strings(self, name: str) -> tuple[str, ...] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(self.at(name), "expected a list of strings")
        return tuple(value)

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(self.at(name), "expected a number")
        return float(value)

    def integer(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(self.at(name), "expected a whole number")
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def spec_from_json(
    data: object, *, categories: Iterable[str], now: datetime, default_optout_threshold: float
) -> CampaignSpec:
    """Validate a campaign as the API (and the command line) receive it; raises SpecError."""
    body = _Reader(
        data,
        "",
        (
            "name",
            "template",
            "audience",
            "policy_version",
            "deadline",
            "on_deadline",
            "rate",
            "daily_cap",
            "optout_threshold",
        ),
    )
    template = _template(_Reader(body.data.get("template"), "template", _TEMPLATE_FIELDS))
    audience = _Reader(
        body.data.get("audience"),
        "audience",
        ("categories", "older_than_days", "policy_below", "contacts", "csv"),
    )
    named = audience.strings("categories")
    if not named:
        raise SpecError("audience.categories", "name at least one category")
    known = set(categories)
    for name in named:
        if name not in known:
            raise SpecError("audience.categories", f"unknown category {name!r}")
    older = audience.integer("older_than_days")
    if older is not None and not 0 <= older <= 36_500:
        raise SpecError("audience.older_than_days", "0 to 36500 days")
    policy_below = audience.text("policy_below", required=False, limit=64)
    if policy_below is not None and parse_version(policy_below) is None:
        raise SpecError("audience.policy_below", "a dotted version number such as 2 or 2.1")
    contacts = _contacts(audience)
    policy_version = body.text("policy_version", limit=64)
    assert policy_version is not None
    if parse_version(policy_version) is None:
        raise SpecError("policy_version", "a dotted version number such as 2 or 2.1")
    deadline = _deadline(body.text("deadline", limit=64) or "", now)
    on_deadline = body.text("on_deadline", required=False, limit=8) or "lapse"
    if on_deadline not in DEADLINE_POLICIES:
        raise SpecError("on_deadline", "lapse or keep")
    rate = body.number("rate")
    rate = DEFAULT_RATE if rate is None else rate
    if not 0 < rate <= MAX_RATE:
        raise SpecError("rate", f"messages per second, more than 0 and at most {MAX_RATE:g}")
    cap = body.integer("daily_cap")
    if cap is not None and cap < 1:
        raise SpecError("daily_cap", "at least 1 contact a day")
    threshold = body.number("optout_threshold")
    threshold = default_optout_threshold if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise SpecError("optout_threshold", "a fraction: more than 0, at most 1")
    return CampaignSpec(
        name=body.text("name", required=False, limit=128)
        or f"re-consent to policy {policy_version}",
        template=template,
        categories=tuple(dict.fromkeys(named)),
        policy_version=policy_version,
        deadline=deadline,
        older_than_days=older,
        policy_below=policy_below,
        contacts=contacts,
        on_deadline=on_deadline,
        rate=rate,
        daily_cap=cap,
        optout_threshold=threshold,
    )


_TEMPLATE_FIELDS: Final = ("name", "language", "buttons", "body_parameters")


def _template(reader: _Reader) -> TemplateSpec:
    name = reader.text("name") or ""
    if not _TEMPLATE_NAME.match(name):
        raise SpecError("template.name", "lowercase letters, digits and underscores")
    language = reader.text("language", limit=16) or ""
    if not _LANGUAGE.match(language):
        raise SpecError("template.language", "a language code such as en or en_US")
    buttons = reader.strings("buttons")
    if buttons is None:
        buttons = DEFAULT_BUTTONS
    if not buttons or len(buttons) > len(ALLOWED_BUTTONS) or len(set(buttons)) != len(buttons):
        raise SpecError("template.buttons", "one or two distinct quick-reply payloads")
    for payload in buttons:
        if payload not in ALLOWED_BUTTONS:
            raise SpecError(
                "template.buttons",
                f"payload {payload!r}: the re-consent flow reads only "
                f"{ids.RECONSENT_YES} and {ids.RECONSENT_NO}",
            )
    parameters = reader.strings("body_parameters") or ()
    for text in parameters:
        if not text.strip() or len(text) > 1024:
            raise SpecError("template.body_parameters", "1 to 1024 characters each")
    return TemplateSpec(name, language, tuple(buttons), tuple(parameters))


def _contacts(audience: _Reader) -> tuple[str, ...] | None:
    listed = audience.strings("contacts")
    csv_text = audience.data.get("csv")
    if listed is None and csv_text is None:
        return None
    found: dict[str, None] = {}
    for position, value in enumerate(listed or ()):
        try:
            found[normalise_identifier(value)] = None
        except ValueError as exc:
            raise SpecError(f"audience.contacts[{position}]", str(exc)) from None
    if csv_text is not None:
        if not isinstance(csv_text, str):
            raise SpecError("audience.csv", "expected the CSV file's text")
        try:
            found.update(dict.fromkeys(identifiers_from_csv(csv_text)))
        except ValueError as exc:
            raise SpecError("audience.csv", str(exc)) from None
    if not found:
        raise SpecError("audience.contacts", "the list names no contact")
    return tuple(found)


def _deadline(text: str, now: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError("deadline", "an ISO 8601 time such as 2026-12-31T00:00:00+00:00") from None
    if moment.utcoffset() is None:
        raise SpecError("deadline", "needs a time zone (e.g. +00:00)")
    if moment <= now:
        raise SpecError("deadline", "must be in the future")
    return moment
