"""The consent conversation, declared as data: states, triggers, and a transition table whose
effects are values.

One table covers every flow (keyword opt-out, clarification of unclear intent, per-category
stop/resume, preferences, double opt-in, re-consent), because they share one conversation per
contact and STOP must win in all of them. `flows.engine` interprets the table (pure), the service
carries out the concrete effects, `flows.mermaid` draws it, and the tests walk it: the picture,
the checks and the behaviour cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from flows.consent import ConsentAction, Method


class State(StrEnum):
    IDLE = "idle"
    AWAITING_OPTIN = "awaiting_optin"
    AWAITING_CLARIFICATION = "awaiting_clarification"
    AWAITING_RECONSENT = "awaiting_reconsent"


class Trigger(StrEnum):
    """What happened, as far as the conversation is concerned (see `flows.classify`)."""

    STOP_ALL = "stop_all"
    STOP_CATEGORY = "stop_category"
    START_ALL = "start_all"
    START_CATEGORY = "start_category"
    YES = "yes"
    NO = "no"
    HELP = "help"
    PREFERENCES = "preferences"
    PREFERENCE_TOGGLE = "preference_toggle"
    OPT_OUT_INTENT = "opt_out_intent"
    CLARIFY_STOP_ALL = "clarify_stop_all"
    CLARIFY_STOP_CATEGORY = "clarify_stop_category"
    CLARIFY_KEEP = "clarify_keep"
    META_STOP_MARKETING = "meta_stop_marketing"
    META_RESUME_MARKETING = "meta_resume_marketing"
    MARKETING_REFUSED = "marketing_refused"
    OTHER_MESSAGE = "other_message"
    OPTIN_REQUESTED = "optin_requested"
    RECONSENT_REQUESTED = "reconsent_requested"
    OPTIN_EXPIRED = "optin_expired"
    CLARIFICATION_TIMEOUT = "clarification_timeout"
    RECONSENT_DEADLINE = "reconsent_deadline"
    CHOOSE = "choose"  # "Choose" on an opt-in prompt: show the categories one by one
    PICK = "pick"  # one category chosen from that list


class TimerKind(StrEnum):
    OPTIN_EXPIRY = "optin_expiry"
    CLARIFICATION = "clarification"
    RECONSENT_DEADLINE = "reconsent_deadline"


TIMER_TRIGGERS: Mapping[Trigger, TimerKind] = {
    Trigger.OPTIN_EXPIRED: TimerKind.OPTIN_EXPIRY,
    Trigger.CLARIFICATION_TIMEOUT: TimerKind.CLARIFICATION,
    Trigger.RECONSENT_DEADLINE: TimerKind.RECONSENT_DEADLINE,
}


class Targets(StrEnum):
    """Which categories an effect is about, resolved by the engine."""

    ALL = "all"  # every category the business has
    EVENT = "event"  # the one the customer named (STOP PROMOTIONS, a list row, a button)
    FLOW = "flow"  # the ones the current flow is about (pending opt-in, re-consent)
    REQUESTED = "requested"  # the ones a business request names (API, campaign)
    DEFAULTS = "defaults"  # the categories marked default (a bare START)
    SUGGESTED = "suggested"  # what an unclear message seemed to be about (default: marketing)


class Message(StrEnum):
    STOP_ALL_CONFIRMATION = "stop_all_confirmation"
    STOP_CATEGORY_CONFIRMATION = "stop_category_confirmation"
    START_CATEGORY_CONFIRMATION = "start_category_confirmation"
    OPTIN_PROMPT = "optin_prompt"
    OPTIN_CONFIRMED = "optin_confirmed"
    OPTIN_DECLINED = "optin_declined"
    CLARIFY_PROMPT = "clarify_prompt"
    CLARIFY_KEPT = "clarify_kept"
    PREFERENCES_MENU = "preferences_menu"
    PREFERENCES_ON = "preferences_updated_on"
    PREFERENCES_OFF = "preferences_updated_off"
    HELP = "help"
    RECONSENT_CONFIRMED = "reconsent_confirmed"
    RECONSENT_WITHDRAWN = "reconsent_withdrawn"
    STALE_ANSWER = "stale_answer"
    OPTIN_CHOICES = "optin_choices"
    OPTIN_PICKED = "optin_picked"


class Guard(StrEnum):
    """Conditions a transition may depend on; each is a pure function of its inputs."""

    SILENCE_MEANS_STOP = "silence_means_stop"
    DEADLINE_LAPSES = "deadline_lapses"
    EVENT_CATEGORY_OPTED_IN = "event_category_opted_in"
    # A reply button or list row that belongs to another message than the open question (an
    # old prompt, a question already answered): see `ANSWER_TRIGGERS`.
    ANSWERS_ANOTHER_QUESTION = "answers_another_question"
    # Every default category is already opted in: a bare START has nothing to ask.
    DEFAULTS_OPTED_IN = "defaults_opted_in"
    # Every category is opted out: nothing is left to keep, so an unclear wish is not asked.
    ALL_OPTED_OUT = "all_opted_out"
    # The category chosen from the list is the last one the opt-in flow still asks about.
    LAST_PICK = "last_pick"


# ---- effects, as values ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """Write a ledger event for each target category. `method=None` takes the trigger's own."""

    action: ConsentAction
    targets: Targets
    method: Method | None = None
    from_flow: bool = False  # source and evidence of the flow's request (double opt-in)


@dataclass(frozen=True, slots=True)
class Reply:
    message: Message
    targets: Targets = Targets.ALL


@dataclass(frozen=True, slots=True)
class Begin:
    """Start a flow about `targets`: a fresh token, so timers of an older flow are ignored."""

    targets: Targets


@dataclass(frozen=True, slots=True)
class Narrow:
    """The flow now asks only about its categories that are not in `targets` (a category chosen
    from the list is answered; the rest are still asked)."""

    targets: Targets


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: TimerKind


@dataclass(frozen=True, slots=True)
class CancelTimers:
    """Cancel every timer of the conversation (leaving a flow)."""


Effect = Record | Reply | Begin | Narrow | StartTimer | CancelTimers


@dataclass(frozen=True, slots=True)
class Transition:
    target: State | None  # None: stay in the current state
    effects: tuple[Effect, ...] = ()
    guard: Guard | None = None
    label: str = ""


STAY_QUIET = Transition(None, (), label="")

_STOP_ALL = Transition(
    State.IDLE,
    (
        CancelTimers(),
        Record(ConsentAction.WITHDRAWN, Targets.ALL),
        Reply(Message.STOP_ALL_CONFIRMATION),
    ),
    label="withdraw all, confirm",
)
_STOP_ONE = Transition(
    None,
    (
        Record(ConsentAction.WITHDRAWN, Targets.EVENT),
        Reply(Message.STOP_CATEGORY_CONFIRMATION, Targets.EVENT),
    ),
    label="withdraw one, confirm",
)
_STOP_ONE_ENDING_FLOW = Transition(
    State.IDLE,
    (
        CancelTimers(),
        Record(ConsentAction.WITHDRAWN, Targets.EVENT),
        Reply(Message.STOP_CATEGORY_CONFIRMATION, Targets.EVENT),
    ),
    label="withdraw one, confirm",
)
# The prompt goes first so that the pending ledger row holds the exact text shown.
_ASK_OPTIN = (
    CancelTimers(),
    Reply(Message.OPTIN_PROMPT, Targets.FLOW),
    Record(ConsentAction.PENDING, Targets.FLOW, from_flow=True),
    StartTimer(TimerKind.OPTIN_EXPIRY),
)

# What every state does unless it says otherwise below.
_ANY_STATE: Mapping[Trigger, tuple[Transition, ...]] = {
    Trigger.STOP_ALL: (_STOP_ALL,),
    Trigger.CLARIFY_STOP_ALL: (_STOP_ALL,),
    Trigger.STOP_CATEGORY: (_STOP_ONE,),
    Trigger.CLARIFY_STOP_CATEGORY: (_STOP_ONE,),
    Trigger.START_CATEGORY: (
        Transition(
            None,
            (
                Record(ConsentAction.GRANTED, Targets.EVENT),
                Reply(Message.START_CATEGORY_CONFIRMATION, Targets.EVENT),
            ),
            label="grant one, confirm",
        ),
    ),
    # A row of an opt-in list tapped after its flow ended names exactly what the customer wants,
    # like START <category>.
    Trigger.PICK: (
        Transition(
            None,
            (
                Record(ConsentAction.GRANTED, Targets.EVENT),
                Reply(Message.START_CATEGORY_CONFIRMATION, Targets.EVENT),
            ),
            label="chosen later: grant one",
        ),
    ),
    Trigger.CHOOSE: (Transition(None, (Reply(Message.STALE_ANSWER),), label="no open question"),),
    Trigger.START_ALL: (
        Transition(
            None, (Reply(Message.HELP),), guard=Guard.DEFAULTS_OPTED_IN, label="nothing to ask"
        ),
        Transition(
            State.AWAITING_OPTIN, (Begin(Targets.DEFAULTS), *_ASK_OPTIN), label="ask to confirm"
        ),
    ),
    Trigger.OPTIN_REQUESTED: (
        Transition(
            State.AWAITING_OPTIN, (Begin(Targets.REQUESTED), *_ASK_OPTIN), label="ask to confirm"
        ),
    ),
    Trigger.RECONSENT_REQUESTED: (
        Transition(
            State.AWAITING_RECONSENT,
            (CancelTimers(), Begin(Targets.REQUESTED), StartTimer(TimerKind.RECONSENT_DEADLINE)),
            label="await re-confirmation",
        ),
    ),
    Trigger.OPT_OUT_INTENT: (
        Transition(
            None,
            (Reply(Message.STOP_ALL_CONFIRMATION),),
            guard=Guard.ALL_OPTED_OUT,
            label="already stopped: say so",
        ),
        Transition(
            State.AWAITING_CLARIFICATION,
            (
                CancelTimers(),
                Begin(Targets.SUGGESTED),
                Reply(Message.CLARIFY_PROMPT, Targets.FLOW),
                StartTimer(TimerKind.CLARIFICATION),
            ),
            label="ask what to stop",
        ),
    ),
    Trigger.HELP: (Transition(None, (Reply(Message.HELP),), label="help"),),
    Trigger.PREFERENCES: (Transition(None, (Reply(Message.PREFERENCES_MENU),), label="menu"),),
    Trigger.PREFERENCE_TOGGLE: (
        Transition(
            None,
            (
                Record(ConsentAction.WITHDRAWN, Targets.EVENT, Method.PREFERENCES_MENU),
                Reply(Message.PREFERENCES_OFF, Targets.EVENT),
            ),
            guard=Guard.EVENT_CATEGORY_OPTED_IN,
            label="toggle off",
        ),
        Transition(
            None,
            (
                Record(ConsentAction.GRANTED, Targets.EVENT, Method.PREFERENCES_MENU),
                Reply(Message.PREFERENCES_ON, Targets.EVENT),
            ),
            label="toggle on",
        ),
    ),
    Trigger.META_STOP_MARKETING: (
        Transition(
            None, (Record(ConsentAction.WITHDRAWN, Targets.EVENT),), label="Meta: stop marketing"
        ),
    ),
    Trigger.META_RESUME_MARKETING: (
        Transition(
            None, (Record(ConsentAction.GRANTED, Targets.EVENT),), label="Meta: resume marketing"
        ),
    ),
    Trigger.MARKETING_REFUSED: (
        Transition(
            None,
            (Record(ConsentAction.WITHDRAWN, Targets.EVENT),),
            label="131050: withdraw marketing",
        ),
    ),
    Trigger.YES: (STAY_QUIET,),
    Trigger.NO: (STAY_QUIET,),
    Trigger.CLARIFY_KEEP: (STAY_QUIET,),
    Trigger.OTHER_MESSAGE: (STAY_QUIET,),
    # A timer whose flow has ended or changed is stale; the engine drops those before lookup,
    # and a timer of another state can only be stale.
    Trigger.OPTIN_EXPIRED: (STAY_QUIET,),
    Trigger.CLARIFICATION_TIMEOUT: (STAY_QUIET,),
    Trigger.RECONSENT_DEADLINE: (STAY_QUIET,),
}

_PER_STATE: Mapping[State, Mapping[Trigger, tuple[Transition, ...]]] = {
    State.IDLE: {},
    State.AWAITING_OPTIN: {
        Trigger.YES: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(
                        ConsentAction.GRANTED, Targets.FLOW, Method.DOUBLE_OPT_IN, from_flow=True
                    ),
                    Reply(Message.OPTIN_CONFIRMED, Targets.FLOW),
                ),
                label="YES: grant",
            ),
        ),
        Trigger.NO: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(ConsentAction.DECLINED, Targets.FLOW, Method.DOUBLE_OPT_IN),
                    Reply(Message.OPTIN_DECLINED, Targets.FLOW),
                ),
                label="NO: decline",
            ),
        ),
        Trigger.OPTIN_EXPIRED: (
            Transition(
                State.IDLE,
                (Record(ConsentAction.EXPIRED, Targets.FLOW, Method.OPTIN_EXPIRY),),
                label="no answer: expire",
            ),
        ),
        Trigger.START_ALL: (
            Transition(None, (Reply(Message.OPTIN_PROMPT, Targets.FLOW),), label="ask again"),
        ),
        Trigger.CHOOSE: (
            Transition(None, (Reply(Message.OPTIN_CHOICES, Targets.FLOW),), label="list them"),
        ),
        Trigger.PICK: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(
                        ConsentAction.GRANTED, Targets.EVENT, Method.DOUBLE_OPT_IN, from_flow=True
                    ),
                    Reply(Message.OPTIN_CONFIRMED, Targets.EVENT),
                ),
                guard=Guard.LAST_PICK,
                label="chose the last: grant it",
            ),
            Transition(
                None,
                (
                    Record(
                        ConsentAction.GRANTED, Targets.EVENT, Method.DOUBLE_OPT_IN, from_flow=True
                    ),
                    Narrow(Targets.EVENT),
                    Reply(Message.OPTIN_PICKED, Targets.EVENT),
                ),
                label="chose one: grant it",
            ),
        ),
        Trigger.STOP_CATEGORY: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(ConsentAction.DECLINED, Targets.FLOW, Method.DOUBLE_OPT_IN),
                    Record(ConsentAction.WITHDRAWN, Targets.EVENT),
                    Reply(Message.STOP_CATEGORY_CONFIRMATION, Targets.EVENT),
                ),
                label="decline, withdraw one",
            ),
        ),
    },
    State.AWAITING_CLARIFICATION: {
        Trigger.YES: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(ConsentAction.WITHDRAWN, Targets.ALL, Method.CLARIFICATION),
                    Reply(Message.STOP_ALL_CONFIRMATION),
                ),
                label="YES: withdraw all",
            ),
        ),
        Trigger.NO: (
            Transition(State.IDLE, (CancelTimers(), Reply(Message.CLARIFY_KEPT)), label="NO: keep"),
        ),
        Trigger.CLARIFY_KEEP: (
            Transition(State.IDLE, (CancelTimers(), Reply(Message.CLARIFY_KEPT)), label="keep"),
        ),
        Trigger.STOP_CATEGORY: (_STOP_ONE_ENDING_FLOW,),
        Trigger.CLARIFY_STOP_CATEGORY: (_STOP_ONE_ENDING_FLOW,),
        Trigger.OPT_OUT_INTENT: (STAY_QUIET,),
        Trigger.CLARIFICATION_TIMEOUT: (
            Transition(
                State.IDLE,
                (
                    Record(ConsentAction.WITHDRAWN, Targets.ALL, Method.CLARIFICATION_TIMEOUT),
                    Reply(Message.STOP_ALL_CONFIRMATION),
                ),
                guard=Guard.SILENCE_MEANS_STOP,
                label="silence: withdraw all",
            ),
            Transition(State.IDLE, (), label="silence: keep"),
        ),
    },
    State.AWAITING_RECONSENT: {
        Trigger.YES: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(
                        ConsentAction.RECONFIRMED,
                        Targets.FLOW,
                        Method.CAMPAIGN_REPLY,
                        from_flow=True,
                    ),
                    Reply(Message.RECONSENT_CONFIRMED, Targets.FLOW),
                ),
                label="YES: reconfirm",
            ),
        ),
        Trigger.NO: (
            Transition(
                State.IDLE,
                (
                    CancelTimers(),
                    Record(ConsentAction.WITHDRAWN, Targets.FLOW, Method.CAMPAIGN_REPLY),
                    Reply(Message.RECONSENT_WITHDRAWN, Targets.FLOW),
                ),
                label="NO: withdraw",
            ),
        ),
        Trigger.RECONSENT_DEADLINE: (
            Transition(
                State.IDLE,
                (
                    Record(
                        ConsentAction.LAPSED, Targets.FLOW, Method.CAMPAIGN_DEADLINE, from_flow=True
                    ),
                ),
                guard=Guard.DEADLINE_LAPSES,
                label="deadline: lapse",
            ),
            Transition(State.IDLE, (), label="deadline: keep"),
        ),
    },
}

#: Answers that only mean something as the answer to one question. A tap on a button of another
#: message (an old opt-in prompt, a question already answered, a previous campaign) is recorded
#: in the transcript, changes nothing and gets a short reply, in every state. A wish to stop is
#: not in this list: "Stop all messages" on an old question still stops.
ANSWER_TRIGGERS = frozenset({Trigger.YES, Trigger.NO, Trigger.CLARIFY_KEEP})

#: The messages that ask the flow's question; a button answers the flow only if it is theirs.
QUESTIONS = frozenset({Message.OPTIN_PROMPT, Message.CLARIFY_PROMPT})

_STALE_ANSWER = Transition(
    None,
    (Reply(Message.STALE_ANSWER, Targets.FLOW),),
    guard=Guard.ANSWERS_ANOTHER_QUESTION,
    label="answer to another question: nothing changes",
)


def _alternatives(state: State, trigger: Trigger) -> tuple[Transition, ...]:
    alternatives = _PER_STATE[state].get(trigger, _ANY_STATE[trigger])
    if trigger in ANSWER_TRIGGERS:
        return (_STALE_ANSWER, *alternatives)
    return alternatives


TABLE: Mapping[tuple[State, Trigger], tuple[Transition, ...]] = {
    (state, trigger): _alternatives(state, trigger) for state in State for trigger in Trigger
}
