"""An answer belongs to its question: a reply button or list row counts only for the message
that asked the open question (`Guard.ANSWERS_ANOTHER_QUESTION`).

Bugs pinned: an old opt-in prompt's "Yes" recorded `reconfirmed` under a later re-consent
campaign, and an old "No, gracias" withdrew marketing from a customer who had been asked
something else.
"""

from __future__ import annotations

from flows.consent import ConsentAction, ConsentStatus, Source
from flows.conversation import Conversation, FlowInput
from flows.effects import reply_id
from flows.engine import step
from flows.machine import Message, State, Trigger
from tests.flows.test_engine import ALL, NOW, ctx, records, said, sends

PENDING = dict.fromkeys(ALL, ConsentStatus.PENDING)


def asked_to_opt_in() -> Conversation:
    decision = step(Conversation(), said(Trigger.START_ALL), ctx())
    (prompt,) = sends(decision)
    assert decision.conversation.prompt == reply_id(prompt.key)
    return decision.conversation


def test_a_button_of_the_open_question_answers_it() -> None:
    conv = asked_to_opt_in()
    yes = step(conv, said(Trigger.YES, 2, answers=conv.prompt), ctx(PENDING))
    assert {r.action for r in records(yes)} == {ConsentAction.GRANTED}
    assert yes.conversation.state is State.IDLE


def test_typed_words_answer_the_open_question() -> None:
    conv = asked_to_opt_in()
    yes = step(conv, said(Trigger.YES, 2), ctx(PENDING))
    assert {r.action for r in records(yes)} == {ConsentAction.GRANTED}


def test_a_button_of_another_message_changes_nothing_and_says_so() -> None:
    conv = asked_to_opt_in()
    for trigger in (Trigger.YES, Trigger.NO):
        late = step(conv, said(trigger, 3, answers="an-older-prompt"), ctx(PENDING))
        assert records(late) == []
        assert late.conversation == conv
        (reply,) = sends(late)
        assert reply.message is Message.STALE_ANSWER and "no longer open" in reply.text


def test_an_old_yes_does_not_reconfirm_under_a_new_campaign() -> None:
    """START, Yes, STOP, a re-consent campaign, then the first prompt's Yes: nothing changes."""
    first = asked_to_opt_in()
    opted_out = dict.fromkeys(ALL, ConsentStatus.OPTED_OUT)
    campaign = FlowInput(
        trigger=Trigger.RECONSENT_REQUESTED,
        event_id="campaign:1:9:request",
        occurred_at=NOW,
        categories=("marketing",),
        source=Source.API,
        prompt_id="campaign:1:9",
    )
    awaiting = step(Conversation(), campaign, ctx(opted_out)).conversation
    assert awaiting.state is State.AWAITING_RECONSENT and awaiting.prompt == "campaign:1:9"
    for trigger in (Trigger.YES, Trigger.NO):
        old = step(awaiting, said(trigger, 4, answers=first.prompt), ctx(opted_out))
        assert records(old) == [] and old.conversation == awaiting
    answered = step(awaiting, said(Trigger.YES, 5, answers="campaign:1:9"), ctx(opted_out))
    assert {r.action for r in records(answered)} == {ConsentAction.RECONFIRMED}


def test_a_button_after_the_question_was_answered_is_late() -> None:
    conv = asked_to_opt_in()
    step(conv, said(Trigger.YES, 2, answers=conv.prompt), ctx(PENDING))
    again = step(Conversation(), said(Trigger.NO, 3, answers=conv.prompt), ctx())
    assert records(again) == []
    assert [r.message for r in sends(again)] == [Message.STALE_ANSWER]


def test_a_conversation_stored_before_prompts_were_remembered_takes_any_answer() -> None:
    legacy = Conversation(state=State.AWAITING_OPTIN, token="t", categories=("marketing",))
    yes = step(legacy, said(Trigger.YES, 2, answers="whatever"), ctx(PENDING))
    assert {r.action for r in records(yes)} == {ConsentAction.GRANTED}


def test_stop_all_on_an_old_question_still_stops() -> None:
    """A wish to stop is honoured from any button, however old."""
    stop = step(Conversation(), said(Trigger.CLARIFY_STOP_ALL, 2, answers="old"), ctx())
    assert {r.action for r in records(stop)} == {ConsentAction.WITHDRAWN}


def test_the_clarifying_question_is_remembered_too() -> None:
    decision = step(Conversation(), said(Trigger.OPT_OUT_INTENT), ctx())
    (question,) = sends(decision)
    assert decision.conversation.prompt == reply_id(question.key)
    keep = step(decision.conversation, said(Trigger.CLARIFY_KEEP, 2, answers="old"), ctx())
    assert [r.message for r in sends(keep)] == [Message.STALE_ANSWER]
    assert keep.conversation == decision.conversation
