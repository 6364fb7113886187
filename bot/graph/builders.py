"""Pure builders for the JSON bodies POSTed to `/{phone_number_id}/messages`.

Meta refuses a malformed message only after the HTTP round trip (error 100/131009), often with a
vague message, and a consent flow that sends a broken opt-in prompt fails in front of the
customer. These builders check Meta's documented limits up front and raise `MessageBuildError`
naming the limit, so a bad locale string or button set fails in tests instead.

Lengths are counted as Python `len()` counts them: Unicode code points. That is how Meta states
its limits ("characters"); an emoji made of several code points therefore counts as several.

Addressing: a phone-number based `wa_id` goes in `to`. Since 2026 a customer who adopted a
username may be known only by a business-scoped user ID (BSUID, e.g. `US.13491208655302741918`);
Meta's Messages API takes it in the top-level `recipient` field, with `to` omitted (when both are
given, `to` wins, and Meta recommends the phone number when known, so `Recipient` sends exactly
one of the two, preferring the phone number).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TEXT_BODY_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_TEXT_MAX = 60
REPLY_BUTTONS_MAX = 3
BUTTON_ID_MAX = 256
BUTTON_TITLE_MAX = 20
LIST_BUTTON_MAX = 20
LIST_SECTIONS_MAX = 10
LIST_ROWS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
TEMPLATE_NAME_MAX = 512

_WA_ID = re.compile(r"\d{1,15}")
_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9][A-Za-z0-9.]*")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?")


class MessageBuildError(ValueError):
    """A message cannot be built because an input breaks one of Meta's documented limits."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a message goes to: a phone-number based `wa_id`, or a business-scoped `user_id`.

    At least one is required. When both are known the message is addressed by `wa_id` (Meta gives
    `to` precedence and recommends phone numbers when available).
    """

    wa_id: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.wa_id is None and self.user_id is None:
            raise MessageBuildError("recipient: a wa_id or a user_id (BSUID) is required")
        if self.wa_id is not None and not _WA_ID.fullmatch(self.wa_id):
            raise MessageBuildError(
                f"recipient: wa_id must be 1 to 15 digits (E.164 without '+'), got {self.wa_id!r}"
            )
        if self.user_id is not None and not _BSUID.fullmatch(self.user_id):
            raise MessageBuildError(
                "recipient: user_id must be a business-scoped user id like "
                f"'US.13491208655302741918', got {self.user_id!r}"
            )

    @classmethod
    def parse(cls, value: str) -> Recipient:
        """A `wa_id` from digits (a leading '+' is dropped), else a BSUID (`CC.xxxx`)."""
        text = value.strip()
        digits = text.removeprefix("+")
        if digits.isdigit():
            return cls(wa_id=digits)
        return cls(user_id=text)

    def address(self) -> dict[str, str]:
        """The addressing fields of a message body: `{"to": wa_id}` or `{"recipient": bsuid}`."""
        if self.wa_id is not None:
            return {"to": self.wa_id}
        assert self.user_id is not None  # guaranteed by __post_init__
        return {"recipient": self.user_id}


@dataclass(frozen=True, slots=True)
class ReplyButton:
    """One quick-reply button: `id` comes back in the reply webhook, `title` is shown."""

    id: str
    title: str


@dataclass(frozen=True, slots=True)
class ListRow:
    """One selectable row of a list message."""

    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ListSection:
    """A titled group of rows (the title is required once a list has several sections)."""

    rows: Sequence[ListRow]
    title: str | None = None


def text_message(
    to: Recipient | str,
    body: str,
    *,
    preview_url: bool = False,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """A plain text message (only inside the 24-hour customer-service window)."""
    _check_text("text body", body, TEXT_BODY_MAX)
    message = _envelope(to, "text", reply_to)
    message["text"] = {"preview_url": preview_url, "body": body}
    return message


def reply_buttons_message(
    to: Recipient | str,
    body: str,
    buttons: Sequence[ReplyButton | tuple[str, str]],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """An interactive message with 1 to 3 quick-reply buttons."""
    _check_text("interactive body", body, INTERACTIVE_BODY_MAX)
    parsed = [b if isinstance(b, ReplyButton) else ReplyButton(*b) for b in buttons]
    if not 1 <= len(parsed) <= REPLY_BUTTONS_MAX:
        raise MessageBuildError(
            f"reply buttons: 1 to {REPLY_BUTTONS_MAX} buttons allowed, got {len(parsed)}"
        )
    for button in parsed:
        _check_id("button id", button.id, BUTTON_ID_MAX)
        _check_text("button title", button.title, BUTTON_TITLE_MAX)
    _check_unique("button id", [b.id for b in parsed])
    _check_unique("button title", [b.title for b in parsed])
    interactive: dict[str, Any] = {"type": "button"}
    _add_header_footer(interactive, header, footer)
    interactive["body"] = {"text": body}
    interactive["action"] = {
        "buttons": [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in parsed]
    }
    message = _envelope(to, "interactive", reply_to)
    message["interactive"] = interactive
    return message


def list_message(
    to: Recipient | str,
    body: str,
    button: str,
    sections: Sequence[ListSection],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """An interactive list: a button opening 1 to 10 sections of, in total, at most 10 rows."""
    _check_text("interactive body", body, INTERACTIVE_BODY_MAX)
    _check_text("list button text", button, LIST_BUTTON_MAX)
    if not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise MessageBuildError(
            f"list sections: 1 to {LIST_SECTIONS_MAX} sections allowed, got {len(sections)}"
        )
    rows = [row for section in sections for row in section.rows]
    if len(rows) > LIST_ROWS_MAX:
        raise MessageBuildError(
            f"list rows: at most {LIST_ROWS_MAX} rows in total allowed, got {len(rows)}"
        )
    built_sections: list[dict[str, Any]] = []
    for number, section in enumerate(sections, start=1):
        if not section.rows:
            raise MessageBuildError(f"list section {number}: at least one row is required")
        built: dict[str, Any] = {}
        if section.title is not None:
            _check_text("section title", section.title, SECTION_TITLE_MAX)
            built["title"] = section.title
        elif len(sections) > 1:
            raise MessageBuildError(
                f"list section {number}: a title is required when there are several sections"
            )
        built["rows"] = [_row(row) for row in section.rows]
        built_sections.append(built)
    _check_unique("row id", [row.id for row in rows])
    interactive: dict[str, Any] = {"type": "list"}
    _add_header_footer(interactive, header, footer)
    interactive["body"] = {"text": body}
    interactive["action"] = {"button": button, "sections": built_sections}
    message = _envelope(to, "interactive", reply_to)
    message["interactive"] = interactive
    return message


def template_message(
    to: Recipient | str,
    name: str,
    language_code: str,
    components: Sequence[Mapping[str, Any]] | None = None,
    *,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """A template message (the only kind allowed outside the 24-hour window).

    `components` are passed as given (see `body_component` and `quick_reply_component`); the
    language carries `"policy": "deterministic"`, the only policy Meta supports.
    """
    if not name or len(name) > TEMPLATE_NAME_MAX or not _TEMPLATE_NAME.fullmatch(name):
        raise MessageBuildError(
            f"template name: 1 to {TEMPLATE_NAME_MAX} lowercase letters, digits or underscores,"
            f" got {name!r}"
        )
    if not _LANGUAGE_CODE.fullmatch(language_code):
        raise MessageBuildError(
            f"template language: a code like 'en' or 'en_US' is required, got {language_code!r}"
        )
    template: dict[str, Any] = {
        "name": name,
        "language": {"policy": "deterministic", "code": language_code},
    }
    if components:
        built: list[dict[str, Any]] = []
        for number, component in enumerate(components, start=1):
            if not isinstance(component.get("type"), str):
                raise MessageBuildError(f"template component {number}: a 'type' is required")
            built.append(dict(component))
        template["components"] = built
    message = _envelope(to, "template", reply_to)
    message["template"] = template
    return message


def body_component(*texts: str) -> dict[str, Any]:
    """A template `body` component filling the body's text variables in order."""
    for text in texts:
        _check_text("template body parameter", text, TEXT_BODY_MAX)
    return {"type": "body", "parameters": [{"type": "text", "text": t} for t in texts]}


def quick_reply_component(index: int, payload: str) -> dict[str, Any]:
    """A template `button` component giving quick-reply button `index` (0-based) its payload."""
    if not 0 <= index <= 9:
        raise MessageBuildError(f"template button index: 0 to 9, got {index}")
    _check_text("template button payload", payload, BUTTON_ID_MAX)
    return {
        "type": "button",
        "sub_type": "quick_reply",
        "index": str(index),
        "parameters": [{"type": "payload", "payload": payload}],
    }


def _envelope(to: Recipient | str, message_type: str, reply_to: str | None) -> dict[str, Any]:
    recipient = to if isinstance(to, Recipient) else Recipient.parse(to)
    message: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    message.update(recipient.address())
    message["type"] = message_type
    if reply_to is not None:
        if not reply_to.strip():
            raise MessageBuildError("context: the replied-to message id (wamid) is empty")
        message["context"] = {"message_id": reply_to}
    return message


def _add_header_footer(interactive: dict[str, Any], header: str | None, footer: str | None) -> None:
    if header is not None:
        _check_text("header text", header, HEADER_TEXT_MAX)
        interactive["header"] = {"type": "text", "text": header}
    if footer is not None:
        _check_text("footer text", footer, FOOTER_TEXT_MAX)
        interactive["footer"] = {"text": footer}


def _row(row: ListRow) -> dict[str, Any]:
    _check_id("row id", row.id, ROW_ID_MAX)
    _check_text("row title", row.title, ROW_TITLE_MAX)
    built = {"id": row.id, "title": row.title}
    if row.description is not None:
        _check_text("row description", row.description, ROW_DESCRIPTION_MAX)
        built["description"] = row.description
    return built


def _check_text(what: str, value: str, limit: int) -> None:
    if not value.strip():
        raise MessageBuildError(f"{what}: must not be empty")
    if len(value) > limit:
        raise MessageBuildError(
            f"{what}: at most {limit} characters allowed, got {len(value)}: {value[:40]!r}"
        )


def _check_id(what: str, value: str, limit: int) -> None:
    _check_text(what, value, limit)
    if value != value.strip():
        raise MessageBuildError(f"{what}: no leading or trailing spaces allowed: {value!r}")


def _check_unique(what: str, values: Sequence[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise MessageBuildError(f"{what}s must be unique: {value!r} appears twice")
        seen.add(value)
