"""docs/flows.md shows what the flows do today: regenerated here and compared."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from flows.locale_catalog import LocaleCatalog
from scripts.transcripts import (
    BUSINESS,
    FLOWS,
    OUTPUT,
    choosing_categories,
    flow_settings,
    generate,
    message_numbers,
    old_prompt_tapped,
    run_flows,
)
from tests.bot.flows.conftest import CATEGORIES
from tests.fakes.chat import LogLine

# Nothing variable is meant to be in the document; should a time or an id slip in, the check
# still compares what matters.
_VARIABLE = [
    (re.compile(r"wamid\.[A-Za-z0-9_=+/-]+"), "wamid.<id>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?"),
        "<time>",
    ),
]


def comparable(text: str) -> str:
    for pattern, replacement in _VARIABLE:
        text = pattern.sub(replacement, text)
    return text


async def test_docs_flows_md_is_up_to_date() -> None:
    assert OUTPUT.is_file(), "docs/flows.md is missing: run python scripts/transcripts.py"
    committed = comparable(OUTPUT.read_text(encoding="utf-8"))
    fresh = comparable(await generate())
    diff = "\n".join(
        difflib.unified_diff(
            committed.splitlines(), fresh.splitlines(), "docs/flows.md", "regenerated", lineterm=""
        )
    )
    assert not diff, f"docs/flows.md is out of date: run python scripts/transcripts.py\n{diff}"
    assert fresh.count("\n## ") == len(FLOWS) + 1


async def _logs_of(*plays: object, tmp_path: Path) -> list[list[LogLine]]:
    flows = [(n, flow) for n, flow in enumerate(FLOWS, 1) if flow.play in plays]
    assert len(flows) == len(plays)
    logs = await run_flows(flows, flow_settings(tmp_path / "flows.db", {}))
    return [logs[n] for n, _ in flows]


async def test_the_old_prompts_button_flow_shows_it_changing_nothing(
    tmp_path: Path, en: LocaleCatalog
) -> None:
    """What docs/flows.md says of a tap on an earlier prompt is what the run did: the tap names
    the first prompt (not the open one), gets the short reply, adds no ledger row and leaves
    every category pending."""
    (log,) = await _logs_of(old_prompt_tapped, tmp_path=tmp_path)
    numbers = message_numbers(log)
    assert list(numbers.values()) == ["#1", "#2"]
    first = next(wamid for wamid, number in numbers.items() if number == "#1")
    (tap,) = [i for i, line in enumerate(log) if line.who == "customer" and line.context]
    assert log[tap].context == first
    after = log[tap + 1 :]
    assert [line.who for line in after] == ["bot", "note", "state", "rows"]
    assert after[0].text == en.render("stale_answer", business=BUSINESS)
    states = [line.text for line in log if line.who == "state"]
    assert states == [states[0], states[0]] and "opted_in" not in states[0]
    assert "granted" not in {row.action for row in after[-1].rows}


async def test_the_choose_flow_grants_exactly_the_picked_category(tmp_path: Path) -> None:
    """The bare START's Choose → list → one pick: the ledger records a grant of exactly that
    category, and the others stay pending."""
    (log,) = await _logs_of(choosing_categories, tmp_path=tmp_path)
    taps = [line.context for line in log if line.who == "customer" and line.context]
    assert [message_numbers(log)[wamid] for wamid in taps] == ["#1", "#2"]
    rows = log[-1].rows
    assert [(r.action, r.category) for r in rows if r.action != "pending"] == [
        ("granted", "order_updates")
    ]
    assert {r.category for r in rows if r.action == "pending"} == set(CATEGORIES)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_docs_flows_md_find_their_flow() -> None:
    """README links to single flows by their numbered headings: a flow added before them
    renumbers them, and the link must follow."""
    readme = (OUTPUT.parent.parent / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\(docs/flows\.md#([^)]+)\)", readme)
    assert linked, "README links to no flow of docs/flows.md"
    headings = re.findall(r"^#+ (.+)$", OUTPUT.read_text(encoding="utf-8"), flags=re.M)
    anchors = {_anchor(h) for h in headings}
    assert set(linked) <= anchors, sorted(set(linked) - anchors)
