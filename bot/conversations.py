"""The service side of the flows: runs the engine for each contact event and carries out the
effects.

For each event: classify it, open the 24-hour window if a customer wrote, read the conversation,
the consents and the window, let the pure engine decide, then write the ledger rows, the new
conversation and an outbox of side effects in ONE transaction, and only then send replies and
set timers. A crash after the commit is replayed from the outbox (the conversation remembers the
last event it applied), so nothing is decided twice and nothing decided is lost; replies have
deterministic ids, so the queue drops a second copy.
Every reply passes the consent gate here, with the same function `/can-send` answers from.
The flow-step row, the contact's locale, the refused-reply row and the hooks are optional parts
(`bot.parts`): one that fails for good is logged and counted, and the decision still applies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Protocol

from bot.db.contacts import ContactRepository
from bot.db.ledger import ConsentChange, ConsentView, ConversationRecord, LedgerRepository
from bot.db.models import Contact
from bot.db.transcript import TranscriptRepository
from bot.hooks import Hooks
from bot.keyword_overrides import EMPTY, version_label
from bot.metrics import Metrics
from bot.outbound import OutboundMessage, OutboundQueue
from bot.parts import OptionalParts
from bot.replies import outbound_for
from bot.settings import Settings
from bot.timers import TimerStore
from bot.window import WindowStore
from flows import events as ev
from flows.classify import Classifier
from flows.consent import Category, ConsentAction, ConsentStatus
from flows.consent_order import Standing, overruled
from flows.conversation import Conversation, FlowContext, FlowPolicy, TemplateRef
from flows.effects import CancelTimer, ConsentRecord, ScheduleTimer, SendReply
from flows.engine import Decision, step
from flows.gate import can_send
from flows.keywords import KeywordMatcher
from flows.locale_catalog import LocaleCatalog
from flows.machine import ANSWER_TRIGGERS, Guard, Trigger
from flows.stop_intent import EVIDENCE_KEY as STOP_INTENT
from flows.stop_intent import StopIntentScorer, StopWords

log = logging.getLogger(__name__)


def flow_policy(settings: Settings) -> FlowPolicy:
    return FlowPolicy(
        business_name=settings.business_name,
        optin_ttl=timedelta(hours=settings.optin_expiry_hours),
        clarification_ttl=timedelta(hours=settings.clarification_timeout_hours),
        silence_means_stop=settings.clarification_silence == "stop_all",
        deadline_lapses=settings.reconsent_deadline_policy == "lapse",
        policy_version=settings.policy_version,
    )


#: `keywords_version` of the locale files alone (no overlay), `bot.keyword_overrides`'s
#: `version_label(0, EMPTY.digest())`.
NO_OVERLAY_VERSION: Final = version_label(0, EMPTY.digest())
#: The evidence key of the keywords version a consent decision was taken under.
KEYWORDS_VERSION: Final = "keywords_version"


class LanguageSource(Protocol):
    """Where a worker reads the `Language` in force for each event: a fixed `Language`, or
    `bot.live_language.LiveLanguage`, which follows the business's keyword changes."""

    @property
    def current(self) -> Language: ...


@dataclass(frozen=True, slots=True)
class Language:
    """The locale data every conversation needs, built once per process."""

    catalogs: Mapping[str, LocaleCatalog]
    categories: tuple[Category, ...]
    matcher: KeywordMatcher
    default_locale: str
    stop_intent: StopIntentScorer | None = None
    #: The keywords version these catalogs carry (`bot.keyword_overrides.version_label`):
    #: recorded in the evidence of every consent decision taken with them.
    keywords_version: str = NO_OVERLAY_VERSION

    @property
    def current(self) -> Language:
        """Itself: a fixed `Language` is a `LanguageSource` that never changes."""
        return self

    @classmethod
    def build(
        cls,
        catalogs: Mapping[str, LocaleCatalog],
        categories: Sequence[Category],
        default: str,
        stop_words: Mapping[str, StopWords] | None = None,
        keywords_version: str = NO_OVERLAY_VERSION,
    ) -> Language:
        extra: dict[str, dict[str, list[str]]] = {}
        for category in categories:
            for locale, words in category.aliases.items():
                extra.setdefault(locale, {})[category.name] = list(words)
        matcher = KeywordMatcher(catalogs, [c.name for c in categories], extra_aliases=extra)
        if default not in catalogs:
            raise ValueError(f"DEFAULT_LOCALE: no locale file for {default!r}")
        scorer = None if stop_words is None else StopIntentScorer(matcher, catalogs, stop_words)
        return cls(catalogs, tuple(categories), matcher, default, scorer, keywords_version)

    def locale_for(self, matched: str | None, recorded: str | None) -> str:
        """What they last wrote in, else their recorded locale, else the default."""
        for candidate in (matched, recorded):
            if candidate is not None and candidate in self.catalogs:
                return candidate
        return self.default_locale


def _overruled(change: ConsentChange, views: Mapping[str, ConsentView]) -> bool:
    view = views.get(change.category)
    standing = Standing(view.status, view.since, view.source) if view is not None else None
    return overruled(change.action, change.source, change.occurred_at, standing) is not None


class ConversationRunner:
    """`EventPipeline`'s contact hook: one event of one contact at a time (the shard's order)."""

    def __init__(
        self,
        *,
        settings: Settings,
        language: LanguageSource,
        contacts: ContactRepository,
        ledger: LedgerRepository,
        transcript: TranscriptRepository,
        outbound: OutboundQueue,
        timers: TimerStore,
        window: WindowStore,
        metrics: Metrics,
        hooks: Hooks | None = None,
    ) -> None:
        self._settings = settings
        self._unlisted_locales: set[str] = set()
        self._source = language
        self._classified_with = language.current
        self._classifier = self._classifier_for(self._classified_with)
        self._policy = flow_policy(settings)
        self._contacts = contacts
        self._ledger = ledger
        self._transcript = transcript
        self._outbound = outbound
        self._timers = timers
        self._window = window
        self._metrics = metrics
        self._hooks = hooks or Hooks()
        self._parts = OptionalParts(metrics)

    @staticmethod
    def _classifier_for(language: Language) -> Classifier:
        return Classifier(language.matcher, language.categories, stop_intent=language.stop_intent)

    def _current(self) -> tuple[Language, Classifier]:
        """The language in force and its classifier, read once per event and kept in the
        event's own variables, so an event never mixes two keyword versions even while other
        shards' events run; the classifier is rebuilt only when the version changed."""
        language = self._source.current
        if language is not self._classified_with:
            self._classified_with = language
            self._classifier = self._classifier_for(language)
        return language, self._classifier

    async def __call__(self, contact: Contact, event: ev.Event) -> None:
        assert contact.id is not None
        language, classifier = self._current()
        contact_id = contact.id
        record = await self._ledger.conversation(contact_id)
        if record is not None and record.last_event_id == event.event_id:
            # Replayed after a crash: the decision is in the ledger; finish its side effects.
            if record.outbox_json:
                await self._carry_out(contact, record.outbox_json, event)
            return
        # A word several languages share ("MENU": de, en, es, it, tr) is read in the contact's
        # language, or, before we know it, in the business's default language.
        classified = classifier.classify(
            event,
            preferred_locale=contact.locale,
            fallback_locale=language.default_locale,
        )
        if classified.customer_message:
            await self._window.open(contact.id, event.occurred_at)
        if isinstance(event, ev.SendRefused) and event.code == 131047:
            await self._window.close(contact.id)
        flow = classified.flow
        if flow is None:
            return
        if flow.trigger in ANSWER_TRIGGERS and isinstance(event, ev.MessageEvent):
            flow = replace(flow, answers=await self._question_of(event))
        locale = language.locale_for(flow.locale, contact.locale)
        if flow.locale is not None and locale != contact.locale:
            before = contact
            done, updated = await self._parts.run(
                "locale", event.event_id, lambda: self._contacts.set_locale(before, locale)
            )
            if done and updated is not None:
                contact = updated
        conversation = Conversation.from_json(record.data_json) if record else Conversation()
        now = datetime.now(UTC)
        window_open = await self._window.is_open(contact_id, now)
        views = await self._ledger.current(contact_id)
        consents = {c: v.status for c, v in views.items()}
        ctx = FlowContext(
            categories=language.categories,
            consents=consents,
            catalog=language.catalogs[locale],
            policy=self._policy,
            window_open=window_open,
            optin_template=self._optin_template(locale),
        )
        decision = step(conversation, flow, ctx)
        if decision.stale:
            log.info("stale timer %s for contact %s ignored", event.event_id, contact.id)
            return
        if (
            decision.transition is not None
            and decision.transition.guard is Guard.ANSWERS_ANOTHER_QUESTION
        ):
            log.info(
                "stale answer %s for contact %s ignored: it belongs to message %s, not to the "
                "open question",
                event.event_id,
                contact_id,
                flow.answers,
            )
        version = language.keywords_version
        changes = [
            self._change(r, event, version)
            for r in decision.effects
            if isinstance(r, ConsentRecord)
        ]
        if changes and all(_overruled(change, views) for change in changes):
            # Older than the customer's own later decision on every category it would change
            # (Meta delivered it late): the ledger records what arrived as `overruled`, and the
            # conversation neither moves nor answers.
            log.info(
                "event %s for contact %s is older than the customer's later decision: recorded, "
                "not applied",
                event.event_id,
                contact_id,
            )
            await self._ledger.apply(
                contact_id,
                changes,
                conversation=ConversationRecord(
                    state=conversation.state.value,
                    token=conversation.token,
                    data_json=conversation.to_json(),
                    last_event_id=event.event_id,
                    outbox_json=None,
                ),
            )
            self._metrics.consent_events.labels(action=ConsentAction.OVERRULED.value).inc(
                len(changes)
            )
            return
        outbox = self._outbox(contact, decision, ctx, consents)
        if changes:
            outbox.append({"consent": [c.event_key for c in changes]})
        if flow.trigger is Trigger.OTHER_MESSAGE and classified.customer_message:
            outbox.append({"unhandled": True})
        if decision.transition is not None and (
            decision.conversation.state is not conversation.state or decision.transition.effects
        ):
            # Before the decision is committed: a crash in between replays the event, which
            # decides the same step again and records nothing twice (the row is keyed on it).
            transition, trigger = decision.transition, flow.trigger
            why = flow.evidence.get(STOP_INTENT, "")
            from_state, to_state = conversation.state, decision.conversation.state
            await self._parts.run(
                "flow_step",
                event.event_id,
                lambda: self._transcript.record_flow_step(
                    contact_id,
                    event_id=event.event_id,
                    from_state=from_state.value,
                    to_state=to_state.value,
                    trigger=trigger.value,
                    label=transition.label,
                    occurred_at=event.occurred_at,
                    why=why,
                ),
            )
        await self._ledger.apply(
            contact_id,
            changes,
            conversation=ConversationRecord(
                state=decision.conversation.state.value,
                token=decision.conversation.token,
                data_json=decision.conversation.to_json(),
                last_event_id=event.event_id,
                outbox_json=json.dumps(outbox) if outbox else None,
            ),
        )
        for change in changes:
            self._metrics.consent_events.labels(action=change.action.value).inc()
        if outbox:
            await self._carry_out(contact, json.dumps(outbox), event)

    async def _question_of(self, event: ev.MessageEvent) -> str | None:
        """Our id of the message a reply button or list row belongs to (Meta's `context`);
        None for typed words, and for a message we have not recorded (the sender may not have
        written Meta's answer yet): such an answer is taken as answering the open question."""
        if not isinstance(event, ev.ButtonReply | ev.InteractiveReply) or not event.context_wamid:
            return None
        return await self._transcript.message_id_of(event.context_wamid)

    def _optin_template(self, locale: str) -> TemplateRef | None:
        """OPTIN_TEMPLATE in the contact's language: TEMPLATE_LANGUAGES's for their locale,
        else the locale code itself, which is logged once per locale so that an operator whose
        templates are approved as `es_MX` sees why a Spanish prompt asked Meta for `es`."""
        name = self._settings.optin_template
        if name is None:
            return None
        language = self._settings.template_language(locale)
        if locale not in dict(self._settings.template_languages) and (
            locale not in self._unlisted_locales
        ):
            self._unlisted_locales.add(locale)
            log.info(
                "OPTIN_TEMPLATE %s goes to contacts of locale %s in language %s (the locale "
                "code itself): TEMPLATE_LANGUAGES lists no template language for %s",
                name,
                locale,
                language,
                locale,
            )
        return TemplateRef(name, language)

    def _change(
        self, record: ConsentRecord, event: ev.Event, keywords_version: str
    ) -> ConsentChange:
        """The ledger row of a decision, its evidence naming the keywords version in force."""
        return ConsentChange(
            category=record.category,
            action=record.action,
            source=record.source,
            method=record.method,
            evidence={**record.evidence, KEYWORDS_VERSION: keywords_version},
            business_name=self._settings.business_name,
            policy_version=record.policy_version,
            occurred_at=event.occurred_at,
            event_key=record.event_key,
        )

    def _outbox(
        self,
        contact: Contact,
        decision: Decision,
        ctx: FlowContext,
        consents: Mapping[str, ConsentStatus],
    ) -> list[dict[str, Any]]:
        """The side effects, in order, as data that survives a crash."""
        assert contact.id is not None
        items: list[dict[str, Any]] = []
        for effect in decision.effects:
            if isinstance(effect, SendReply):
                message = outbound_for(contact, effect)
                status = ConsentStatus.NONE
                if effect.categories and effect.purpose.value == "optin_prompt":
                    statuses = {consents.get(c, ConsentStatus.NONE) for c in effect.categories}
                    if statuses == {ConsentStatus.OPTED_OUT}:
                        status = ConsentStatus.OPTED_OUT
                verdict = can_send(
                    purpose=effect.purpose,
                    template=effect.template is not None,
                    window_open=ctx.window_open,
                    status=status,
                )
                items.append(
                    {
                        "send": message.encode(),
                        "allowed": verdict.allowed,
                        "reason": verdict.reason.value,
                    }
                )
            elif isinstance(effect, ScheduleTimer):
                items.append(
                    {
                        "timer": effect.timer.value,
                        "token": effect.token,
                        "due": effect.due_at.isoformat(),
                    }
                )
            elif isinstance(effect, CancelTimer):
                items.append({"cancel": effect.timer.value})
        return items

    async def _carry_out(self, contact: Contact, outbox_json: str, event: ev.Event) -> None:
        assert contact.id is not None
        now = datetime.now(UTC)
        for item in json.loads(outbox_json):
            if "send" in item:
                message = OutboundMessage.decode(item["send"])
                if item["allowed"]:
                    await self._outbound.enqueue(message, now=now)
                else:
                    await self._refused(message, item["reason"], now)
            elif "timer" in item:
                await self._timers.schedule(
                    ev.TimerFired(
                        event_id=f"timer:{contact.id}:{item['timer']}:{item['token']}",
                        phone_number_id=self._settings.phone_number_id,
                        occurred_at=datetime.fromisoformat(item["due"]),
                        contact=ev.ContactRef(wa_id=contact.wa_id, user_id=contact.user_id),
                        contact_id=contact.id,
                        timer=item["timer"],
                        token=item["token"],
                    ),
                    datetime.fromisoformat(item["due"]),
                )
            elif "cancel" in item:
                await self._timers.cancel(contact.id, item["cancel"])
            elif "consent" in item:
                written = await self._ledger.events_by_keys(item["consent"])
                await self._parts.run(
                    "hooks", event.event_id, partial(self._hooks.emit_consent, contact, written)
                )
            elif "unhandled" in item:
                await self._parts.run(
                    "hooks", event.event_id, lambda: self._hooks.emit_unhandled(contact, event)
                )
        await self._ledger.clear_outbox(contact.id, event.event_id)

    async def _refused(self, message: OutboundMessage, reason: str, now: datetime) -> None:
        """The gate stopped one of our own replies (say, the window closed before a timeout
        confirmation): keep it in the transcript as refused, with the reason."""
        log.info("reply %s not sent: %s", message.message_id, reason)
        self._metrics.outbound_messages.labels(result="refused").inc()
        await self._parts.run(
            "transcript", message.message_id, lambda: self._record_refused(message, reason, now)
        )

    async def _record_refused(self, message: OutboundMessage, reason: str, now: datetime) -> None:
        await self._transcript.record_outbound(
            message.contact_id,
            message_id=message.message_id,
            kind=message.kind,
            text=message.text,
            payload_json=json.dumps(message.body, ensure_ascii=False),
            status="refused",
            occurred_at=now,
            error_title=f"consent gate: {reason}",
        )
