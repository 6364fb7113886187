"""One language's words and message texts, as loaded from `locales/<code>.toml`.

The catalog is pure data plus two small helpers (`render`, `category_name`), so conversation
flows can be written and tested without files. `REQUIRED_MESSAGES` is the single list of message
keys and the placeholders each must use: the loader (`bot.locales`) validates every locale file
against it, so a translation that forgets a key or a placeholder fails at startup and in the
tests, never in front of a customer. `MESSAGE_LIMITS` holds WhatsApp's length limits for the
texts used as button, list and section titles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BUILTIN_CATEGORIES",
    "CATEGORY_NAME_LIMIT",
    "KEYWORD_KINDS",
    "MESSAGE_LIMITS",
    "REQUIRED_MESSAGES",
    "CategoryText",
    "LocaleCatalog",
    "MissingMessage",
    "MissingValue",
    "whatsapp_length",
]

BUILTIN_CATEGORIES: tuple[str, ...] = ("marketing", "order_updates", "reminders", "account_alerts")

KEYWORD_KINDS: tuple[str, ...] = (
    "stop_all",
    "stop_one",
    "start_all",
    "start_one",
    "yes",
    "no",
    "help",
    "preferences",
)
"""Keyword lists of a locale. `stop_one` and `start_one` are the verbs that take a category
("STOP PROMOTIONS"); the others are whole messages."""

REQUIRED_MESSAGES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "stop_all_confirmation": frozenset({"business"}),
        "stop_category_confirmation": frozenset({"business", "category", "category_keyword"}),
        "start_category_confirmation": frozenset({"business", "category", "category_keyword"}),
        "optin_prompt": frozenset({"business", "categories"}),
        "optin_confirmed": frozenset({"business", "categories"}),
        "optin_declined": frozenset({"business", "categories"}),
        "yes_button": frozenset(),
        "no_button": frozenset(),
        "clarify_prompt": frozenset({"business"}),
        "clarify_stop_all_button": frozenset(),
        "clarify_stop_category_button": frozenset({"category"}),
        "clarify_keep_button": frozenset(),
        "clarify_kept": frozenset({"business"}),
        "preferences_body": frozenset({"business"}),
        "preferences_button": frozenset(),
        "preferences_section": frozenset(),
        "status_on": frozenset(),
        "status_off": frozenset(),
        "preferences_row_description": frozenset({"status"}),
        "preferences_updated_on": frozenset({"business", "category"}),
        "preferences_updated_off": frozenset({"business", "category"}),
        "help": frozenset({"business", "status_list"}),
        "reconsent_confirmed": frozenset({"business"}),
        "reconsent_withdrawn": frozenset({"business"}),
        "stale_answer": frozenset({"business"}),
        "choose_button": frozenset(),
        "optin_choices_body": frozenset({"business"}),
        "optin_choices_button": frozenset(),
        "optin_picked": frozenset({"business", "category"}),
        "category_list_separator": frozenset(),
        "category_list_last_separator": frozenset(),
        "opt_out_footer": frozenset(),
    }
)
"""Message key -> the exact set of `{placeholders}` its text must use."""

MESSAGE_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "yes_button": 20,
        "no_button": 20,
        "clarify_stop_all_button": 20,
        "clarify_stop_category_button": 20,
        "clarify_keep_button": 20,
        "preferences_button": 20,
        "choose_button": 20,
        "optin_choices_button": 20,
        "preferences_section": 24,
        "preferences_row_description": 72,
    }
)
"""WhatsApp's maximum length of texts used as reply-button titles (20), the list button (20), a
list section title (24) and a list row description (72), measured after substitution with the
longest value the locale can put in (its longest category name, its longer status word)."""

CATEGORY_NAME_LIMIT = 24
"""Category names are list row titles, which WhatsApp limits to 24 characters."""


def whatsapp_length(text: str) -> int:
    """Length as WhatsApp counts it for titles, taken conservatively in UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class MissingMessage(LookupError):
    """A message key the catalog does not have (a programming error, named clearly)."""

    def __init__(self, locale: str, key: str) -> None:
        super().__init__(f"locale {locale!r} has no message {key!r}")
        self.locale = locale
        self.key = key


class MissingValue(ValueError):
    """`render` was not given a value for one of the message's placeholders."""

    def __init__(self, locale: str, key: str, placeholder: str) -> None:
        super().__init__(
            f"message {key!r} of locale {locale!r} needs a value for {{{placeholder}}}"
        )
        self.locale = locale
        self.key = key
        self.placeholder = placeholder


@dataclass(frozen=True, slots=True)
class CategoryText:
    """How one locale names a message category and which words customers use for it."""

    display: str
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LocaleCatalog:
    """Everything one language contributes: keywords, category words, intent phrases, texts.

    `keywords` maps each kind of `KEYWORD_KINDS` to its words as written in the locale file (the
    matcher normalises them). `opt_out_phrases` are the phrases that reveal an unclear wish to
    stop receiving messages; a phrase may contain `{messages}`, which stands for any of
    `message_words` or any category alias.
    """

    code: str
    name: str
    direction: str
    keywords: Mapping[str, tuple[str, ...]]
    categories: Mapping[str, CategoryText]
    opt_out_phrases: tuple[str, ...]
    message_words: tuple[str, ...]
    messages: Mapping[str, str]

    def render(self, key: str, **values: str) -> str:
        """The text of message `key` with its placeholders filled in; extra values are ignored."""
        template = self.messages.get(key)
        if template is None:
            raise MissingMessage(self.code, key)
        try:
            return template.format_map(values)
        except KeyError as missing:
            raise MissingValue(self.code, key, str(missing.args[0])) from None

    def category_name(self, category: str) -> str:
        """The display name of `category`; for a category this locale does not name (a custom
        category), its identifier with underscores as spaces."""
        text = self.categories.get(category)
        return text.display if text is not None else category.replace("_", " ")

    def category_keyword(self, category: str) -> str:
        """The word a customer of this locale types for `category` after STOP/START: its first
        alias, or for a custom category its identifier upper-cased with spaces."""
        text = self.categories.get(category)
        if text is not None and text.aliases:
            return text.aliases[0]
        return category.replace("_", " ").upper()

    def join_categories(self, categories: Sequence[str]) -> str:
        """Display names joined with the locale's separators: "a, b and c"."""
        names = [self.category_name(category) for category in categories]
        if len(names) <= 1:
            return "".join(names)
        separator = self.messages.get("category_list_separator", ", ")
        last = self.messages.get("category_list_last_separator", " & ")
        return separator.join(names[:-1]) + last + names[-1]
