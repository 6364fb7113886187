"""The one interpreter of the transition table: (conversation, input, context) -> decision.

Pure and deterministic: the same inputs give the same decision, down to message ids and ledger
keys (derived from the input's event id), which is what lets the service replay a decision after
a crash without doing anything twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from flows.consent import ConsentAction, ConsentStatus, Source, status_after
from flows.conversation import Conversation, FlowContext, FlowInput
from flows.effects import CancelTimer, ConcreteEffect, ConsentRecord, ScheduleTimer, reply_id
from flows.machine import (
    QUESTIONS,
    TABLE,
    TIMER_TRIGGERS,
    Begin,
    CancelTimers,
    Guard,
    Narrow,
    Record,
    Reply,
    StartTimer,
    State,
    Targets,
    TimerKind,
    Transition,
)
from flows.replies import render
from flows.stop_intent import EVIDENCE_KEY as STOP_INTENT

# New evidence of consent is worth keeping even when the status does not change.
_ALWAYS_RECORDED = frozenset({ConsentAction.GRANTED, ConsentAction.RECONFIRMED})


@dataclass(frozen=True, slots=True)
class Decision:
    conversation: Conversation
    effects: tuple[ConcreteEffect, ...]
    transition: Transition | None
    stale: bool = False  # a timer of a flow that has ended or changed: nothing happens


def flow_token(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


def _guard_holds(
    guard: Guard | None, conv: Conversation, event: FlowInput, ctx: FlowContext
) -> bool:
    match guard:
        case None:
            return True
        case Guard.SILENCE_MEANS_STOP:
            return ctx.policy.silence_means_stop
        case Guard.DEADLINE_LAPSES:
            # The request's own setting (a campaign's) wins over the business-wide one.
            if conv.deadline_policy is not None:
                return conv.deadline_policy == "lapse"
            return ctx.policy.deadline_lapses
        case Guard.EVENT_CATEGORY_OPTED_IN:
            return all(ctx.status(c) is ConsentStatus.OPTED_IN for c in event.categories)
        case Guard.ANSWERS_ANOTHER_QUESTION:
            return _answers_another_question(conv, event)
        case Guard.DEFAULTS_OPTED_IN:
            return all(
                ctx.status(c.name) is ConsentStatus.OPTED_IN for c in ctx.categories if c.default
            )
        case Guard.LAST_PICK:
            return bool(event.categories) and set(conv.categories) <= set(event.categories)
        case Guard.ALL_OPTED_OUT:
            return all(ctx.status(c.name) is ConsentStatus.OPTED_OUT for c in ctx.categories)
    raise ValueError(f"unknown guard {guard}")  # pragma: no cover


def _answers_another_question(conv: Conversation, event: FlowInput) -> bool:
    """A button or list row (typed words carry no reference) of one of our messages that is not
    the open question. Without an open question any such answer is late; with a question whose
    message is unknown (a conversation stored before questions were remembered) it counts."""
    if event.answers is None:
        return False
    if conv.state is State.IDLE:
        return True
    return bool(conv.prompt) and event.answers != conv.prompt


def _targets(
    targets: Targets, conv: Conversation, event: FlowInput, ctx: FlowContext
) -> tuple[str, ...]:
    known = tuple(c.name for c in ctx.categories)
    match targets:
        case Targets.ALL:
            return known
        case Targets.EVENT | Targets.REQUESTED:
            return tuple(c for c in event.categories if c in known)
        case Targets.FLOW:
            return conv.categories
        case Targets.DEFAULTS:
            # A bare START asks only for what the customer does not already receive: the prompt
            # and its answers name exactly the categories asked.
            return tuple(
                c.name
                for c in ctx.categories
                if c.default and ctx.status(c.name) is not ConsentStatus.OPTED_IN
            )
        case Targets.SUGGESTED:
            named = tuple(c for c in event.categories if c in known)
            if named:
                return named[:1]
            marketing = [c.name for c in ctx.categories if c.kind.value == "marketing"]
            return tuple(marketing[:1]) or known[:1]
    raise ValueError(f"unknown targets {targets}")  # pragma: no cover


def step(conv: Conversation, event: FlowInput, ctx: FlowContext) -> Decision:
    """Apply `event` to `conv`; return the new conversation and the concrete effects, in order."""
    if event.trigger in TIMER_TRIGGERS and event.timer_token != conv.token:
        return Decision(conv, (), None, stale=True)
    alternatives = TABLE[(conv.state, event.trigger)]
    transition = next(t for t in alternatives if _guard_holds(t.guard, conv, event, ctx))
    effects: list[ConcreteEffect] = []
    before = conv
    current = conv
    consents = dict(ctx.consents)
    for n, effect in enumerate(transition.effects):
        match effect:
            case Begin(targets=targets):
                current = Conversation(
                    state=current.state,
                    token=flow_token(event.event_id),
                    categories=_targets(targets, before, event, ctx),
                    source=event.source,
                    method=event.method,
                    evidence=dict(event.evidence),
                    policy_version=event.policy_version or ctx.policy.policy_version,
                    deadline=event.deadline,
                    deadline_policy=event.deadline_policy,
                    prompt=event.prompt_id or "",
                )
            case CancelTimers():
                effects.extend(CancelTimer(kind) for kind in TimerKind)
            case Narrow(targets=targets):
                answered = set(_targets(targets, current, event, ctx))
                remaining = tuple(c for c in current.categories if c not in answered)
                current = replace(current, categories=remaining)
            case StartTimer(timer=timer):
                effects.append(ScheduleTimer(timer, current.token, _due(timer, event, ctx)))
            case Reply(message=message, targets=targets):
                categories = _targets(targets, current, event, ctx)
                view = replace(ctx, consents=consents)
                sent = render(message, categories, view, key=f"{event.event_id}:{n}")
                effects.append(sent)
                if message.value == "optin_prompt":
                    current = replace(
                        current, evidence={**current.evidence, "shown_text": sent.text}
                    )
                if message in QUESTIONS:
                    current = replace(current, prompt=reply_id(sent.key))
            case Record():
                for record in _records(effect, current, event, ctx, consents):
                    effects.append(record)
    target = transition.target or current.state
    final = Conversation() if target is State.IDLE else replace(current, state=target)
    return Decision(final, tuple(effects), transition)


def _due(timer: TimerKind, event: FlowInput, ctx: FlowContext) -> datetime:
    if timer is TimerKind.OPTIN_EXPIRY:
        return event.occurred_at + ctx.policy.optin_ttl
    if timer is TimerKind.CLARIFICATION:
        return event.occurred_at + ctx.policy.clarification_ttl
    return event.deadline or event.occurred_at


def _records(
    effect: Record,
    conv: Conversation,
    event: FlowInput,
    ctx: FlowContext,
    consents: dict[str, ConsentStatus],
) -> list[ConsentRecord]:
    records = []
    for category in _targets(effect.targets, conv, event, ctx):
        current = consents.get(category, ConsentStatus.NONE)
        after, _ = status_after(effect.action, current, None)
        if after is current and effect.action not in _ALWAYS_RECORDED:
            continue
        consents[category] = after
        evidence = dict(event.evidence)
        source = event.source
        if effect.from_flow:
            evidence = dict(conv.evidence)
            if conv.token != flow_token(event.event_id):  # the answer, not the request itself
                evidence.update({f"reply_{k}": v for k, v in event.evidence.items()})
            source = conv.source or Source.WHATSAPP_THREAD
        elif STOP_INTENT in conv.evidence and conv.token != flow_token(event.event_id):
            # A decision that answers the clarifying question (a button, YES, the timer) keeps
            # why the question was asked: the ledger then says what the customer first wrote
            # meant, not only which button ended it.
            evidence.setdefault(STOP_INTENT, conv.evidence[STOP_INTENT])
        records.append(
            ConsentRecord(
                category=category,
                action=effect.action,
                source=source,
                method=effect.method or event.method,
                evidence=evidence,
                policy_version=conv.policy_version
                or event.policy_version
                or ctx.policy.policy_version,
                event_key=f"{event.event_id}:{category}:{effect.action.value}",
            )
        )
    return records
