"""The flows page: the conversation's state diagram and its transition table, both drawn from
``flows.machine.TABLE``, the table the engine runs, so the picture cannot drift from the code.

The diagram is Mermaid source rendered in the browser by the vendored ``mermaid.min.js`` (served
by the app, no CDN); without JavaScript the source and the table below it still read.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.appkeys import SETTINGS
from bot.console.auth import console_page
from bot.console.labels import load_labels
from bot.console.render import render
from bot.console.sessions import AgentSession
from flows.machine import (
    TABLE,
    Begin,
    CancelTimers,
    Effect,
    Narrow,
    Record,
    Reply,
    StartTimer,
    State,
)


@dataclass(frozen=True, slots=True)
class TransitionRow:
    state: str
    trigger: str
    guard: str
    target: str
    label: str
    effects: str


def describe(effect: Effect) -> str:
    """One effect in words: ``record withdrawn (all)``, ``reply optin_prompt (flow)``…"""
    match effect:
        case Record(action=action, targets=targets, method=method):
            how = f", {method.value}" if method else ""
            return f"record {action.value} ({targets.value}{how})"
        case Reply(message=message, targets=targets):
            return f"reply {message.value} ({targets.value})"
        case Begin(targets=targets):
            return f"begin a flow ({targets.value})"
        case Narrow(targets=targets):
            return f"stop asking about ({targets.value})"
        case StartTimer(timer=timer):
            return f"start timer {timer.value}"
        case CancelTimers():
            return "cancel timers"
    raise ValueError(f"unknown effect {effect!r}")  # pragma: no cover


def transition_rows() -> list[TransitionRow]:
    """Every transition that changes the state or does something (as `optin-bot flows`)."""
    rows = []
    for (state, trigger), alternatives in TABLE.items():
        for transition in alternatives:
            target = transition.target or state
            if target is state and not transition.effects:
                continue
            rows.append(
                TransitionRow(
                    state=state.value,
                    trigger=trigger.value,
                    guard=transition.guard.value if transition.guard else "",
                    target=target.value,
                    label=transition.label,
                    effects="; ".join(describe(e) for e in transition.effects),
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class Edge:
    """One numbered arrow of a diagram and what it means, for the legend beside it."""

    number: int
    source: str
    target: str
    triggers: str
    outcome: str


@dataclass(frozen=True, slots=True)
class FlowDiagram:
    title: str
    about: str
    mermaid: str
    edges: tuple[Edge, ...] = ()


def _mermaid_text(text: str) -> str:
    """A state's name as Mermaid accepts it inside quotes (no quotes, colons or semicolons)."""
    return text.replace('"', "'").replace(":", " ").replace(";", ",")


def _numbered(
    edges: dict[tuple[str, str, str], list[str]], words: dict[str, str], direction: str = "LR"
) -> tuple[str, tuple[Edge, ...]]:
    """Mermaid source whose arrows carry only a number, and the legend of those numbers.

    Long labels on arrows overlapped each other in the drawing (several arrows join the same two
    states); a number per arrow cannot, and the legend beside the diagram says in full what each
    one is. States are named in plain words, their code kept as the node's id."""
    lines = ["stateDiagram-v2", f"    direction {direction}", f"    [*] --> {State.IDLE.value}"]
    named = sorted({state for source, target, _ in edges for state in (source, target)})
    lines += [f'    state "{_mermaid_text(words.get(state, state))}" as {state}' for state in named]
    legend = []
    numbers: dict[tuple[str, str], list[int]] = {}
    for number, ((source, target, outcome), triggers) in enumerate(sorted(edges.items()), 1):
        numbers.setdefault((source, target), []).append(number)
        legend.append(Edge(number, source, target, ", ".join(triggers), outcome))
    # One arrow per pair of states, carrying the numbers of every move between them.
    for (source, target), moves in numbers.items():
        lines.append(f"    {source} --> {target}: {', '.join(map(str, moves))}")
    return "\n".join(lines) + "\n", tuple(legend)


#: Each flow of more than one step waits in its own state for the customer's answer; everything
#: else (STOP, START of one category, HELP, preferences, Meta's signals) takes one step and
#: leaves the state as it was, which the table shows better than loops drawn on one node.
_FLOWS: tuple[tuple[str, State, str], ...] = (
    (
        "Double opt-in",
        State.AWAITING_OPTIN,
        "START or a business request asks to confirm; YES grants, NO declines, silence expires.",
    ),
    (
        "Clarification",
        State.AWAITING_CLARIFICATION,
        'An unclear opt-out ("no more of this") is asked about; silence follows the policy.',
    ),
    (
        "Re-consent",
        State.AWAITING_RECONSENT,
        "A campaign asks to reconfirm by a deadline; YES reconfirms, NO withdraws.",
    ),
)


def _diagram(waiting: State, words: dict[str, str]) -> tuple[str, tuple[Edge, ...]]:
    """Mermaid source of one flow (and its legend): into ``waiting`` from idle, back to idle,
    and what only ``waiting`` does while it waits. One edge per outcome, with every trigger
    that leads to it; what every state does alike (HELP, a STOP of one category...) is left to
    the table."""
    home = State.IDLE
    edges: dict[tuple[str, str, str], list[str]] = {}
    for (state, trigger), alternatives in TABLE.items():
        shared = state is not home and alternatives is TABLE[(home, trigger)]
        for transition in alternatives:
            target = transition.target or state
            if target is state and not transition.effects:
                continue
            inside = {state, target} <= {home, waiting} and waiting in {state, target}
            if not inside or (shared and target is state):
                continue
            guard = f"[{transition.guard.value}] " if transition.guard else ""
            key = (state.value, target.value, guard + transition.label)
            edges.setdefault(key, []).append(trigger.value)
    return _numbered(edges, words)


def whole_table(words: dict[str, str]) -> tuple[str, tuple[Edge, ...]]:
    """Every state at once, numbered like the flows (one arrow per source, target and
    outcome)."""
    edges: dict[tuple[str, str, str], list[str]] = {}
    for (state, trigger), alternatives in TABLE.items():
        for transition in alternatives:
            target = transition.target or state
            if target is state and not transition.effects:
                continue
            guard = f"[{transition.guard.value}] " if transition.guard else ""
            key = (state.value, target.value, guard + transition.label)
            edges.setdefault(key, []).append(trigger.value)
    # Top to bottom: the pending states side by side under idle leave the numbers room.
    return _numbered(edges, words, "TB")


def flow_diagrams(words: dict[str, str] | None = None) -> list[FlowDiagram]:
    words = words or {}
    return [
        FlowDiagram(title, about, *_diagram(waiting, words)) for title, waiting, about in _FLOWS
    ]


@console_page
async def flows_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    rows = transition_rows()
    labels = load_labels(request.app[SETTINGS].default_locale)
    words = dict(labels["states"])
    everything, everything_edges = whole_table(words)
    return render(
        request,
        "console/flows.html",
        {
            "section": "flows",
            "diagrams": flow_diagrams(words),
            "mermaid": everything,
            "mermaid_edges": everything_edges,
            "states": [s.value for s in State],
            "rows": rows,
        },
        session=session,
        inline_styles=True,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/flows", flows_page)
