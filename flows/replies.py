"""Rendering the machine's `Reply` effects into the texts, buttons and lists a customer sees.

Pure: a locale catalog is data. Button and row ids are what `flows.classify` reads back, so the
two modules share the `ids` below and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from flows.consent import ConsentStatus
from flows.conversation import FlowContext
from flows.effects import ListRow, Purpose, SendReply
from flows.machine import Message


class ids:
    """Payloads of the buttons and list rows we send (and read back)."""

    OPTIN_YES = "optin:yes"
    OPTIN_NO = "optin:no"
    OPTIN_CHOOSE = "optin:choose"
    OPTIN_PICK = "optin:pick:"  # + category
    RECONSENT_YES = "reconsent:yes"
    RECONSENT_NO = "reconsent:no"
    CLARIFY_STOP_ALL = "clarify:stop_all"
    CLARIFY_STOP = "clarify:stop:"  # + category
    CLARIFY_KEEP = "clarify:keep"
    PREFERENCE = "pref:"  # + category


_PURPOSE: dict[Message, Purpose] = {
    Message.STOP_ALL_CONFIRMATION: Purpose.STOP_CONFIRMATION,
    Message.STOP_CATEGORY_CONFIRMATION: Purpose.STOP_CONFIRMATION,
    Message.OPTIN_PROMPT: Purpose.OPTIN_PROMPT,
}


def _display(ctx: FlowContext, category: str) -> str:
    for known in ctx.categories:
        if known.name == category:
            return known.display(ctx.catalog.code, ctx.catalog.category_name(category))
    return ctx.catalog.category_name(category)


def _join(ctx: FlowContext, categories: Sequence[str]) -> str:
    names = [_display(ctx, c) for c in categories]
    if len(names) <= 1:
        return "".join(names)
    separator = ctx.catalog.render("category_list_separator")
    last = ctx.catalog.render("category_list_last_separator")
    return separator.join(names[:-1]) + last + names[-1]


def _status_word(ctx: FlowContext, category: str) -> str:
    on = ctx.status(category) is ConsentStatus.OPTED_IN
    return ctx.catalog.render("status_on" if on else "status_off")


def render(
    message: Message, categories: tuple[str, ...], ctx: FlowContext, *, key: str
) -> SendReply:
    """The reply `message` about `categories`, in the contact's language."""
    cat = ctx.catalog
    business = ctx.policy.business_name
    purpose = _PURPOSE.get(message, Purpose.SERVICE_REPLY)
    first = categories[0] if categories else ""

    base = SendReply(key=key, message=message, purpose=purpose, text="", categories=categories)
    reply = functools.partial(dataclasses.replace, base)

    match message:
        case Message.STOP_ALL_CONFIRMATION:
            return reply(text=cat.render("stop_all_confirmation", business=business))
        case Message.STOP_CATEGORY_CONFIRMATION | Message.START_CATEGORY_CONFIRMATION:
            name = _join(ctx, categories)
            return reply(
                text=cat.render(
                    message.value,
                    business=business,
                    category=name,
                    category_keyword=cat.category_keyword(first).upper(),
                )
            )
        case Message.OPTIN_PROMPT:
            text = cat.render("optin_prompt", business=business, categories=_join(ctx, categories))
            # Consent specific to each purpose: with more than one category, "Choose" lists
            # them so the customer can take some and not others.
            choose = (
                ((ids.OPTIN_CHOOSE, cat.render("choose_button")),) if len(categories) > 1 else ()
            )
            buttons = (
                (ids.OPTIN_YES, cat.render("yes_button")),
                *choose,
                (ids.OPTIN_NO, cat.render("no_button")),
            )
            if ctx.window_open or ctx.optin_template is None:
                return reply(text=text, buttons=buttons)
            return reply(
                text=text,
                template=ctx.optin_template.name,
                template_language=ctx.optin_template.language,
                template_parameters=(business, _join(ctx, categories)),
                template_button_payloads=(ids.OPTIN_YES, ids.OPTIN_NO),
            )
        case Message.OPTIN_CONFIRMED | Message.OPTIN_DECLINED:
            return reply(
                text=cat.render(message.value, business=business, categories=_join(ctx, categories))
            )
        case (
            Message.CLARIFY_KEPT
            | Message.RECONSENT_CONFIRMED
            | Message.RECONSENT_WITHDRAWN
            | Message.STALE_ANSWER
        ):
            return reply(text=cat.render(message.value, business=business))
        case Message.CLARIFY_PROMPT:
            suggested = first or "marketing"
            return reply(
                text=cat.render("clarify_prompt", business=business),
                buttons=(
                    (ids.CLARIFY_STOP_ALL, cat.render("clarify_stop_all_button")),
                    (
                        ids.CLARIFY_STOP + suggested,
                        cat.render(
                            "clarify_stop_category_button", category=_display(ctx, suggested)
                        ),
                    ),
                    (ids.CLARIFY_KEEP, cat.render("clarify_keep_button")),
                ),
            )
        case Message.OPTIN_CHOICES:
            return reply(
                text=cat.render("optin_choices_body", business=business),
                list_button=cat.render("optin_choices_button"),
                list_section=cat.render("preferences_section"),
                rows=tuple(
                    ListRow(ids.OPTIN_PICK + c, _display(ctx, c)[:24]) for c in categories[:10]
                ),
            )
        case Message.OPTIN_PICKED:
            return reply(
                text=cat.render("optin_picked", business=business, category=_join(ctx, categories))
            )
        case Message.PREFERENCES_MENU:
            rows = tuple(
                ListRow(
                    ids.PREFERENCE + c.name,
                    _display(ctx, c.name)[:24],
                    cat.render("preferences_row_description", status=_status_word(ctx, c.name)),
                )
                for c in ctx.categories[:10]
            )
            return reply(
                text=cat.render("preferences_body", business=business),
                list_button=cat.render("preferences_button"),
                list_section=cat.render("preferences_section"),
                rows=rows,
            )
        case Message.PREFERENCES_ON | Message.PREFERENCES_OFF:
            return reply(
                text=cat.render(message.value, business=business, category=_join(ctx, categories))
            )
        case Message.HELP:
            lines = "\n".join(
                f"• {_display(ctx, c.name)}: {_status_word(ctx, c.name)}" for c in ctx.categories
            )
            return reply(text=cat.render("help", business=business, status_list=lines))
    raise ValueError(f"no rendering for {message}")  # pragma: no cover - enum is exhaustive
