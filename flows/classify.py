"""From a typed event to what it means for the conversation (`FlowInput`), or to nothing.

Pure. The customer's own words (keywords, their language, our buttons and list rows), Meta's
signals (template "Stop promotions" buttons, `user_preferences`, refused sends), and the service's
own events (timers, business requests) all become one of the machine's triggers here, with the
source, method and evidence the ledger will keep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from flows import events as ev
from flows.consent import Category, CategoryKind, Method, Source
from flows.conversation import FlowInput
from flows.keywords import Command, KeywordMatcher
from flows.machine import Trigger
from flows.replies import ids
from flows.stop_intent import EVIDENCE_KEY, StopIntent, StopIntentScorer

_COMMANDS = {
    Command.STOP_ALL: Trigger.STOP_ALL,
    Command.STOP_CATEGORY: Trigger.STOP_CATEGORY,
    Command.START_ALL: Trigger.START_ALL,
    Command.START_CATEGORY: Trigger.START_CATEGORY,
    Command.YES: Trigger.YES,
    Command.NO: Trigger.NO,
    Command.HELP: Trigger.HELP,
    Command.PREFERENCES: Trigger.PREFERENCES,
}

_TIMERS = {
    "optin_expiry": Trigger.OPTIN_EXPIRED,
    "clarification": Trigger.CLARIFICATION_TIMEOUT,
    "reconsent_deadline": Trigger.RECONSENT_DEADLINE,
}

_FIXED_IDS = {
    ids.OPTIN_YES: Trigger.YES,
    ids.OPTIN_NO: Trigger.NO,
    ids.OPTIN_CHOOSE: Trigger.CHOOSE,
    ids.RECONSENT_YES: Trigger.YES,
    ids.RECONSENT_NO: Trigger.NO,
    ids.CLARIFY_STOP_ALL: Trigger.CLARIFY_STOP_ALL,
    ids.CLARIFY_KEEP: Trigger.CLARIFY_KEEP,
}

# Meta's user_preferences values: `stop` withdraws marketing, `resume` and `signup` grant it.
_META_PREFERENCES = {
    "stop": Trigger.META_STOP_MARKETING,
    "resume": Trigger.META_RESUME_MARKETING,
    "signup": Trigger.META_RESUME_MARKETING,
}


@dataclass(frozen=True, slots=True)
class Classified:
    """A FlowInput, plus whether the event was a customer's message (it opens the window)."""

    flow: FlowInput | None
    customer_message: bool


def marketing_categories(categories: Sequence[Category]) -> tuple[str, ...]:
    return tuple(c.name for c in categories if c.kind is CategoryKind.MARKETING)


@dataclass(frozen=True, slots=True)
class _Language:
    """The contact's known language, and the one to read shared words in before it is known."""

    known: str | None
    fallback: str | None


class Classifier:
    """`stop_intent`, when given, finds unclear wishes to stop beyond the locale files'
    `[intents]` phrases (typos, soft phrasings, the stop-sign emoji, negations) and explains
    each in the evidence (`stop_intent`); without it only those phrases are asked about."""

    def __init__(
        self,
        matcher: KeywordMatcher,
        categories: Sequence[Category],
        *,
        stop_intent: StopIntentScorer | None = None,
    ) -> None:
        self._matcher = matcher
        self._stop_intent = stop_intent
        self._categories = tuple(categories)
        self._names = frozenset(c.name for c in categories)

    def classify(
        self,
        event: ev.Event,
        *,
        preferred_locale: str | None,
        fallback_locale: str | None = None,
    ) -> Classified:
        """`preferred_locale` is the contact's known language; `fallback_locale` the one to read
        a shared word in before it is known (the business's default)."""
        language = _Language(preferred_locale, fallback_locale)
        return self._classify(event, language)

    def _classify(self, event: ev.Event, language: _Language) -> Classified:
        match event:
            case ev.TextMessage(body=body):
                return Classified(self._words(event, body, language, Method.KEYWORD), True)
            case ev.ButtonReply(payload=payload, text=text):
                return Classified(self._button(event, payload, text, language), True)
            case ev.InteractiveReply(reply_id=reply_id, title=title):
                return Classified(self._button(event, reply_id, title, language), True)
            case ev.UserPreferencesUpdate(value=value):
                trigger = _META_PREFERENCES.get(value.lower())
                if trigger is None:
                    return Classified(None, False)
                return Classified(
                    self._input(
                        event,
                        trigger,
                        categories=marketing_categories(self._categories),
                        source=Source.META_PREFERENCES,
                        method=Method.META_USER_PREFERENCES,
                        evidence={"meta_value": value, "meta_category": event.category},
                    ),
                    False,
                )
            case ev.TimerFired(timer=timer, token=token):
                trigger = _TIMERS.get(timer)
                if trigger is None:
                    return Classified(None, False)
                return Classified(
                    FlowInput(
                        trigger=trigger,
                        event_id=event.event_id,
                        occurred_at=event.occurred_at,
                        timer_token=token,
                    ),
                    False,
                )
            case ev.ConsentRequest():
                return Classified(self._request(event), False)
            case ev.SendRefused(code=131050, message_id=message_id):
                return Classified(
                    self._input(
                        event,
                        Trigger.MARKETING_REFUSED,
                        categories=marketing_categories(self._categories),
                        source=Source.META_PREFERENCES,
                        method=Method.META_SEND_ERROR,
                        evidence={"error_code": "131050", "message_id": message_id},
                    ),
                    False,
                )
            case ev.SendRefused():
                return Classified(None, False)
            case ev.SystemChange() | ev.StatusUpdate() | ev.WebhookError() | ev.AccountUpdate():
                return Classified(None, False)
            case ev.Unknown():
                return Classified(None, False)
        # Any other message a customer writes (media, location, reaction...) opens the window.
        return Classified(self._input(event, Trigger.OTHER_MESSAGE), True)

    def _input(
        self,
        event: ev.Event,
        trigger: Trigger,
        *,
        categories: tuple[str, ...] = (),
        locale: str | None = None,
        source: Source = Source.WHATSAPP_THREAD,
        method: Method = Method.KEYWORD,
        evidence: dict[str, str] | None = None,
    ) -> FlowInput:
        base = {}
        wamid = getattr(event, "wamid", None)
        if wamid:
            base["wamid"] = wamid
        return FlowInput(
            trigger=trigger,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            categories=categories,
            locale=locale,
            source=source,
            method=method,
            evidence={**base, **(evidence or {})},
        )

    def _words(self, event: ev.Event, text: str, language: _Language, method: Method) -> FlowInput:
        evidence = {"text": text[:1000]}
        keyword = self._matcher.match(
            text, preferred_locale=language.known, fallback_locale=language.fallback
        )
        if keyword is not None:
            categories = (keyword.category,) if keyword.category else ()
            return self._input(
                event,
                _COMMANDS[keyword.command],
                categories=categories,
                locale=keyword.locale,
                method=method,
                evidence=evidence,
            )
        intent = self._intent(text, language.known or language.fallback)
        if intent is not None:
            categories = (intent.category,) if intent.category else ()
            return self._input(
                event,
                Trigger.OPT_OUT_INTENT,
                categories=categories,
                locale=intent.locale,
                method=Method.CLARIFICATION,
                evidence={**evidence, EVIDENCE_KEY: intent.reason},
            )
        return self._input(event, Trigger.OTHER_MESSAGE, evidence=evidence)

    def _intent(self, text: str, preferred: str | None) -> StopIntent | None:
        if self._stop_intent is not None:
            return self._stop_intent.assess(text, preferred_locale=preferred)
        found = self._matcher.opt_out_intent(text, preferred_locale=preferred)
        if found is None:
            return None
        return StopIntent(found.locale, found.category, f'phrase "{found.phrase.lower()}"')

    def _button(self, event: ev.Event, payload: str, text: str, language: _Language) -> FlowInput:
        evidence = {"button": payload[:256], "text": text[:256]}
        trigger = _FIXED_IDS.get(payload)
        if trigger is not None:
            return self._input(event, trigger, method=Method.BUTTON, evidence=evidence)
        for prefix, trigger in (
            (ids.CLARIFY_STOP, Trigger.CLARIFY_STOP_CATEGORY),
            (ids.PREFERENCE, Trigger.PREFERENCE_TOGGLE),
            (ids.OPTIN_PICK, Trigger.PICK),
        ):
            if payload.startswith(prefix) and payload[len(prefix) :] in self._names:
                method = Method.PREFERENCES_MENU if prefix == ids.PREFERENCE else Method.BUTTON
                return self._input(
                    event,
                    trigger,
                    categories=(payload[len(prefix) :],),
                    method=method,
                    evidence=evidence,
                )
        # A button of a business template ("Stop promotions" on a marketing template) is the
        # customer's word like a typed keyword; its payload is the business's, its text ours.
        method = Method.META_TEMPLATE_BUTTON if isinstance(event, ev.ButtonReply) else Method.BUTTON
        for candidate in (text, payload):
            flow = self._words(event, candidate, language, method)
            if flow.trigger is not Trigger.OTHER_MESSAGE:
                return replace(flow, evidence={**flow.evidence, **evidence})
        return self._input(event, Trigger.OTHER_MESSAGE, evidence=evidence)

    def _request(self, event: ev.ConsentRequest) -> FlowInput:
        trigger = Trigger.OPTIN_REQUESTED if event.kind == "optin" else Trigger.RECONSENT_REQUESTED
        try:
            evidence = {str(k): str(v) for k, v in json.loads(event.evidence_json).items()}
        except (ValueError, AttributeError):
            evidence = {"evidence_json": event.evidence_json}
        return FlowInput(
            trigger=trigger,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            categories=tuple(c for c in event.categories if c in self._names),
            locale=event.locale,
            source=Source(event.source),
            method=Method.DOUBLE_OPT_IN
            if trigger is Trigger.OPTIN_REQUESTED
            else Method.CAMPAIGN_REPLY,
            evidence=evidence,
            policy_version=event.policy_version,
            deadline=event.deadline,
            deadline_policy=event.deadline_policy,
            prompt_id=event.prompt_id,
        )
