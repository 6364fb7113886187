"""Walk the transition table: total, every state has a way out, STOP wins everywhere, and the
Mermaid picture is drawn from the same table."""

from __future__ import annotations

import itertools

import pytest

from flows.consent import ConsentAction
from flows.machine import (
    ANSWER_TRIGGERS,
    TABLE,
    TIMER_TRIGGERS,
    Begin,
    CancelTimers,
    Guard,
    Record,
    Reply,
    StartTimer,
    State,
    Targets,
    Trigger,
)
from flows.mermaid import to_mermaid


def test_every_state_and_trigger_pair_is_declared() -> None:
    assert set(TABLE) == set(itertools.product(State, Trigger))
    for pair, alternatives in TABLE.items():
        assert alternatives, pair
        # The last alternative has no guard: some transition always applies.
        assert alternatives[-1].guard is None, pair


def test_every_state_is_reachable_from_idle_and_has_a_way_back() -> None:
    reachable = {State.IDLE}
    frontier = [State.IDLE]
    while frontier:
        state = frontier.pop()
        for trigger in Trigger:
            for transition in TABLE[(state, trigger)]:
                target = transition.target or state
                if target not in reachable:
                    reachable.add(target)
                    frontier.append(target)
    assert reachable == set(State)
    for state in State:
        exits = {t.target for trigger in Trigger for t in TABLE[(state, trigger)]}
        assert State.IDLE in exits or state is State.IDLE, f"{state} has no way out"


@pytest.mark.parametrize("state", list(State))
def test_stop_wins_in_every_state(state: State) -> None:
    (transition,) = TABLE[(state, Trigger.STOP_ALL)]
    assert transition.target is State.IDLE
    assert CancelTimers() in transition.effects
    assert Record(ConsentAction.WITHDRAWN, Targets.ALL) in transition.effects
    replies = [e for e in transition.effects if isinstance(e, Reply)]
    assert len(replies) == 1, "exactly one confirmation"


@pytest.mark.parametrize("state", [s for s in State if s is not State.IDLE])
def test_a_flow_state_sets_its_own_timer_on_entry(state: State) -> None:
    entering = [
        t for (s, _), alts in TABLE.items() for t in alts if t.target is state and s is not state
    ]
    assert entering
    for transition in entering:
        assert any(isinstance(e, Begin) for e in transition.effects)
        assert any(isinstance(e, StartTimer) for e in transition.effects)


def test_each_timer_only_acts_in_its_own_state() -> None:
    own = {
        Trigger.OPTIN_EXPIRED: State.AWAITING_OPTIN,
        Trigger.CLARIFICATION_TIMEOUT: State.AWAITING_CLARIFICATION,
        Trigger.RECONSENT_DEADLINE: State.AWAITING_RECONSENT,
    }
    assert set(own) == set(TIMER_TRIGGERS)
    for trigger, home in own.items():
        for state in State:
            alternatives = TABLE[(state, trigger)]
            if state is home:
                assert all(t.target is State.IDLE for t in alternatives)
            else:
                assert all(t.target is None and not t.effects for t in alternatives)


def test_yes_and_no_mean_nothing_outside_a_question() -> None:
    """Outside a question YES and NO change nothing: typed, they get no answer; a button of one
    of our old messages gets only the short "no longer open" reply."""
    for trigger in (Trigger.YES, Trigger.NO):
        stale, quiet = TABLE[(State.IDLE, trigger)]
        assert quiet.target is None and not quiet.effects and quiet.guard is None
        assert stale.guard is Guard.ANSWERS_ANOTHER_QUESTION and stale.target is None
        assert [type(e) for e in stale.effects] == [Reply]


def test_every_answer_checks_its_question_first() -> None:
    """Bug pinned: an old prompt's "Yes" reconfirmed consent under a new re-consent campaign,
    and an old "No, gracias" withdrew marketing. Every state tries the stale-answer guard before
    anything a YES, NO or "keep" could do."""
    for state in State:
        for trigger in ANSWER_TRIGGERS:
            first = TABLE[(state, trigger)][0]
            assert first.guard is Guard.ANSWERS_ANOTHER_QUESTION
            assert not any(isinstance(e, Record) for e in first.effects)


def test_only_a_customer_or_meta_grants_consent() -> None:
    """No transition grants consent on a business request alone: a request only makes it
    pending, and the grant waits for the customer's YES."""
    for trigger in (Trigger.OPTIN_REQUESTED, Trigger.RECONSENT_REQUESTED):
        for state in State:
            for transition in TABLE[(state, trigger)]:
                for effect in transition.effects:
                    if isinstance(effect, Record):
                        assert effect.action is ConsentAction.PENDING


def test_the_mermaid_diagram_shows_every_state_changing_transition() -> None:
    diagram = to_mermaid()
    assert diagram.startswith("stateDiagram-v2\n")
    for (state, trigger), alternatives in TABLE.items():
        for transition in alternatives:
            target = transition.target or state
            if target is not state:
                assert f"{state.value} --> {target.value}: {trigger.value}" in diagram
