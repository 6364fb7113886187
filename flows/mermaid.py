"""A Mermaid state diagram drawn from the transition table itself, so it cannot drift."""

from __future__ import annotations

from collections import defaultdict

from flows.machine import TABLE, State


def to_mermaid() -> str:
    """`stateDiagram-v2` of every transition that changes state or does something.

    A self-loop is drawn when a state does something without leaving; triggers a state ignores
    are left out. Each edge says `trigger [guard] / what it does`.
    """
    lines = ["stateDiagram-v2", "    direction LR", f"    [*] --> {State.IDLE.value}"]
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (state, trigger), alternatives in TABLE.items():
        for transition in alternatives:
            target = (transition.target or state).value
            if target == state.value and not transition.effects:
                continue
            label = trigger.value
            if transition.guard is not None:
                label += f" [{transition.guard.value}]"
            if transition.label:
                label += f" / {transition.label}"
            edges[(state.value, target)].append(label)
    for (source, target), labels in sorted(edges.items()):
        for label in sorted(set(labels)):
            lines.append(f"    {source} --> {target}: {label}")
    return "\n".join(lines) + "\n"
