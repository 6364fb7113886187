"""The sandbox's template list: what Meta's `GET /{WABA id}/message_templates` would hold.

Sandbox mode has no Business Account to ask, yet a person trying the bot should see templates
checked as they will be live: the business panel's re-consent campaign goes through the check,
and so does a `POST /v1/messages` naming one of these templates. The list is Meta's shape
(`name`, `language`, `category`, `components`, `status`), in every language the service speaks
(each locale code, each language `TEMPLATE_LANGUAGES` maps to, and `en_US`), worded from the
locale files, so that the way out of each marketing template is the locale's own
`opt_out_footer`:

- `spring_sale` (MARKETING, the README's example): a footer and a "Stop promotions" quick reply;
- the re-consent template (`RECONSENT_TEMPLATE`, else `reconsent_request`; MARKETING): YES / NO
  quick replies and the footer;
- the opt-in template (`OPTIN_TEMPLATE`, else `optin_request`; UTILITY);
- `order_shipped` (UTILITY), which needs no way out;
- `flash_sale_no_opt_out` (MARKETING without a way out): refused, to show the refusal.

A template this list does not name is sent unchecked, with the warning (the list is an example,
not the business's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.message_templates.catalog import StaticTemplateIndex, parse_templates
from bot.settings import Settings
from flows.keywords import KeywordMatcher
from flows.locale_catalog import LocaleCatalog

#: The re-consent template the sandbox's campaign names when RECONSENT_TEMPLATE is unset (no
#: message leaves the machine in sandbox mode, so any approved-looking name shows the flow).
SANDBOX_RECONSENT_TEMPLATE: Final = "reconsent_request"
SANDBOX_OPTIN_TEMPLATE: Final = "optin_request"
WITHOUT_OPT_OUT: Final = "flash_sale_no_opt_out"
DESCRIPTION: Final = "the sandbox"


def _languages(settings: Settings, catalogs: Mapping[str, LocaleCatalog]) -> dict[str, str]:
    """Template language -> the locale whose words it is written in."""
    languages = {code: code for code in catalogs}
    for locale, language in settings.template_languages:
        languages[language] = locale if locale in catalogs else settings.default_locale
    languages.setdefault("en_US", "en")
    return languages


def _body(text: str) -> dict[str, str]:
    return {"type": "BODY", "text": text}


def _footer(catalog: LocaleCatalog) -> dict[str, str]:
    return {"type": "FOOTER", "text": catalog.messages["opt_out_footer"]}


def _quick_replies(*titles: str) -> dict[str, Any]:
    return {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": t} for t in titles]}


def sandbox_templates(
    settings: Settings, catalogs: Mapping[str, LocaleCatalog]
) -> list[dict[str, Any]]:
    """The list's entries, as Meta's API would answer them."""
    reconsent = settings.reconsent_template or SANDBOX_RECONSENT_TEMPLATE
    optin = settings.optin_template or SANDBOX_OPTIN_TEMPLATE
    entries: list[dict[str, Any]] = []
    for language, locale in sorted(_languages(settings, catalogs).items()):
        catalog = catalogs[locale]
        yes, no = catalog.messages["yes_button"], catalog.messages["no_button"]
        shapes: list[tuple[str, str, list[dict[str, Any]]]] = [
            (
                "spring_sale",
                "MARKETING",
                [
                    _body("Hi {{1}}, our spring sale is on!"),
                    _footer(catalog),
                    _quick_replies("Stop promotions"),
                ],
            ),
            (
                reconsent,
                "MARKETING",
                [
                    _body("{{1}} updated its privacy policy. Keep receiving our messages?"),
                    _footer(catalog),
                    _quick_replies(yes, no),
                ],
            ),
            (
                optin,
                "UTILITY",
                [_body("May {{1}} message you on WhatsApp?"), _quick_replies(yes, no)],
            ),
            ("order_shipped", "UTILITY", [_body("Your order {{1}} has shipped.")]),
            (WITHOUT_OPT_OUT, "MARKETING", [_body("Flash sale: 50% off today only!")]),
        ]
        entries.extend(
            {
                "name": name,
                "language": language,
                "category": category,
                "components": components,
                "status": "APPROVED",
            }
            for name, category, components in shapes
        )
    return entries


def sandbox_index(
    settings: Settings, catalogs: Mapping[str, LocaleCatalog], matcher: KeywordMatcher
) -> StaticTemplateIndex:
    """The sandbox's list as the guard reads it: unlisted templates go unchecked."""
    return StaticTemplateIndex(
        parse_templates(sandbox_templates(settings, catalogs), matcher),
        description=DESCRIPTION,
        strict=False,
    )
