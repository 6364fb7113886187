"""The engine on its own: decisions for each flow, determinism, stale timers, and a random walk
over every trigger that checks the invariants the product promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.categories import BUILTIN
from bot.locales import load_locales
from flows.consent import ConsentAction, ConsentStatus, Method, Source, status_after
from flows.conversation import Conversation, FlowContext, FlowInput, FlowPolicy, TemplateRef
from flows.effects import CancelTimer, ConsentRecord, Purpose, ScheduleTimer, SendReply
from flows.engine import Decision, flow_token, step
from flows.locale_catalog import LocaleCatalog
from flows.machine import Message, State, TimerKind, Trigger

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ALL = tuple(c.name for c in BUILTIN)


@cache
def catalog(code: str = "en") -> LocaleCatalog:
    return load_locales()[code]


def ctx(
    consents: dict[str, ConsentStatus] | None = None,
    *,
    window_open: bool = True,
    template: TemplateRef | None = None,
    silence_means_stop: bool = True,
) -> FlowContext:
    return FlowContext(
        categories=BUILTIN,
        consents=consents or {},
        catalog=catalog(),
        policy=FlowPolicy(
            business_name="Acme", silence_means_stop=silence_means_stop, policy_version="7"
        ),
        window_open=window_open,
        optin_template=template,
    )


def said(trigger: Trigger, n: int = 1, **extra: object) -> FlowInput:
    return FlowInput(
        trigger=trigger,
        event_id=f"msg:wamid.{n}",
        occurred_at=NOW,
        evidence={"wamid": f"wamid.{n}"},
        **extra,
    )  # type: ignore[arg-type]


def records(decision: Decision) -> list[ConsentRecord]:
    return [e for e in decision.effects if isinstance(e, ConsentRecord)]


def sends(decision: Decision) -> list[SendReply]:
    return [e for e in decision.effects if isinstance(e, SendReply)]


def test_stop_without_consent_is_a_do_not_contact_record() -> None:
    decision = step(Conversation(), said(Trigger.STOP_ALL), ctx())
    assert [(r.category, r.action) for r in records(decision)] == [
        (c, ConsentAction.WITHDRAWN) for c in ALL
    ]
    (reply,) = sends(decision)
    assert reply.purpose is Purpose.STOP_CONFIRMATION and "Acme" in reply.text
    assert "START" in reply.text
    assert {e.timer for e in decision.effects if isinstance(e, CancelTimer)} == set(TimerKind)
    assert decision.conversation == Conversation()


def test_a_second_stop_confirms_again_but_writes_nothing_new() -> None:
    opted_out = dict.fromkeys(ALL, ConsentStatus.OPTED_OUT)
    decision = step(Conversation(), said(Trigger.STOP_ALL, 2), ctx(opted_out))
    assert records(decision) == []
    assert len(sends(decision)) == 1


def test_start_asks_for_the_default_categories_and_yes_grants_them() -> None:
    asked = step(Conversation(), said(Trigger.START_ALL), ctx())
    conv = asked.conversation
    assert conv.state is State.AWAITING_OPTIN and conv.categories == ALL
    (prompt,) = sends(asked)
    assert [b[0] for b in prompt.buttons] == ["optin:yes", "optin:choose", "optin:no"]
    assert all(c.action is ConsentAction.PENDING for c in records(asked))
    assert records(asked)[0].evidence["shown_text"] == prompt.text
    (timer,) = [e for e in asked.effects if isinstance(e, ScheduleTimer)]
    assert timer.due_at == NOW + timedelta(hours=48) and timer.token == conv.token

    pending = dict.fromkeys(ALL, ConsentStatus.PENDING)
    yes = step(conv, said(Trigger.YES, 2), ctx(pending))
    granted = records(yes)
    assert [(r.category, r.action, r.method) for r in granted] == [
        (c, ConsentAction.GRANTED, Method.DOUBLE_OPT_IN) for c in ALL
    ]
    assert granted[0].evidence["shown_text"] == prompt.text
    assert granted[0].evidence["reply_wamid"] == "wamid.2"
    assert granted[0].policy_version == "7"
    assert yes.conversation.state is State.IDLE


def test_outside_the_window_the_prompt_is_the_configured_template() -> None:
    request = FlowInput(
        trigger=Trigger.OPTIN_REQUESTED,
        event_id="req:1",
        occurred_at=NOW,
        categories=("marketing",),
        source=Source.WEBSITE,
        method=Method.DOUBLE_OPT_IN,
        evidence={"ip": "203.0.113.7"},
    )
    decision = step(
        Conversation(),
        request,
        ctx(window_open=False, template=TemplateRef("optin_confirm", "en_US")),
    )
    (prompt,) = sends(decision)
    assert prompt.template == "optin_confirm" and prompt.template_language == "en_US"
    assert prompt.template_button_payloads == ("optin:yes", "optin:no")
    (pending,) = records(decision)
    assert pending.source is Source.WEBSITE and pending.evidence["ip"] == "203.0.113.7"


def test_a_timer_of_an_older_flow_is_stale() -> None:
    asked = step(Conversation(), said(Trigger.START_ALL), ctx()).conversation
    old = FlowInput(
        trigger=Trigger.OPTIN_EXPIRED,
        event_id="timer:x",
        occurred_at=NOW,
        timer_token="not-this-flow",
    )
    assert step(asked, old, ctx()).stale
    due = FlowInput(
        trigger=Trigger.OPTIN_EXPIRED, event_id="timer:y", occurred_at=NOW, timer_token=asked.token
    )
    expired = step(asked, due, ctx(dict.fromkeys(ALL, ConsentStatus.PENDING)))
    assert {r.action for r in records(expired)} == {ConsentAction.EXPIRED}
    assert sends(expired) == [], "silence is not messaged"


def test_silence_after_a_clarifying_question_follows_the_policy() -> None:
    asked = step(Conversation(), said(Trigger.OPT_OUT_INTENT), ctx())
    (question,) = sends(asked)
    assert question.message is Message.CLARIFY_PROMPT and len(question.buttons) == 3
    assert question.buttons[1][0] == "clarify:stop:marketing"
    timeout = FlowInput(
        trigger=Trigger.CLARIFICATION_TIMEOUT,
        event_id="timer:c",
        occurred_at=NOW,
        timer_token=asked.conversation.token,
    )
    stopped = step(asked.conversation, timeout, ctx())
    assert {r.method for r in records(stopped)} == {Method.CLARIFICATION_TIMEOUT}
    kept = step(asked.conversation, timeout, ctx(silence_means_stop=False))
    assert records(kept) == [] and kept.conversation.state is State.IDLE


def test_decisions_are_deterministic() -> None:
    assert step(Conversation(), said(Trigger.START_ALL), ctx()) == step(
        Conversation(), said(Trigger.START_ALL), ctx()
    )
    assert flow_token("a") == flow_token("a") != flow_token("b")


def test_conversation_json_round_trip() -> None:
    conv = step(Conversation(), said(Trigger.START_ALL), ctx()).conversation
    assert Conversation.from_json(conv.to_json()) == conv


_GRANTING = {
    Trigger.YES,
    Trigger.PICK,  # a category the customer chose from the opt-in list
    Trigger.START_CATEGORY,
    Trigger.PREFERENCE_TOGGLE,
    Trigger.META_RESUME_MARKETING,
}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(Trigger)), st.sampled_from(ALL), st.booleans()), max_size=25
    )
)
def test_random_walks_keep_the_promises(walk: list[tuple[Trigger, str, bool]]) -> None:
    conv = Conversation()
    consents: dict[str, ConsentStatus] = {}
    before: dict[str, ConsentStatus | None] = {}
    for n, (trigger, category, right_token) in enumerate(walk):
        event = FlowInput(
            trigger=trigger,
            event_id=f"e{n}",
            occurred_at=NOW,
            categories=(category,),
            timer_token=conv.token if right_token else "stale",
        )
        decision = step(conv, event, ctx(consents))
        for record in records(decision):
            assert record.action is not ConsentAction.GRANTED or trigger in _GRANTING
            status, pending_from = status_after(
                record.action,
                consents.get(record.category, ConsentStatus.NONE),
                before.get(record.category),
            )
            consents[record.category] = status
            before[record.category] = pending_from
        assert len([s for s in sends(decision) if s.purpose is Purpose.STOP_CONFIRMATION]) <= 1
        conv = decision.conversation
        if trigger is Trigger.STOP_ALL:
            assert conv.state is State.IDLE
            assert all(consents[c] is ConsentStatus.OPTED_OUT for c in ALL)
