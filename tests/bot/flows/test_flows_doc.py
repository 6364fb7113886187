"""docs/flows.md shows what the flows do today: regenerated here and compared."""

from __future__ import annotations

import difflib
import re

from scripts.transcripts import FLOWS, OUTPUT, generate

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
