"""The flows page: the Mermaid diagram and the table, both from the table the engine runs, with
the diagram's script served by the app itself."""

from __future__ import annotations

import html
import re

from bot.console.flows_page import describe, flow_diagrams, transition_rows, whole_table
from bot.console.labels import load_labels
from flows.consent import ConsentAction, Method
from flows.machine import Record, Targets
from tests.bot.console.support import Agent


async def test_the_diagram_and_the_table_come_from_the_transition_table(
    embedded_agent: Agent,
) -> None:
    await embedded_agent.login()
    response = await embedded_agent.client.get("/console/flows")
    page = await response.text()
    source = re.search(r'<pre class="mermaid" id="flow-all">(.*?)</pre>', page, re.S)
    words = dict(load_labels("en")["states"])
    assert source is not None and html.unescape(source.group(1)) == whole_table(words)[0]
    flows = re.findall(r'<pre class="mermaid" id="flow-diagram-\d">(.*?)</pre>', page, re.S)
    assert [html.unescape(f) for f in flows] == [d.mermaid for d in flow_diagrams(words)]
    # Regression: edge labels overlapped; arrows carry numbers, a legend says what each is.
    assert page.count('<table class="c-table c-legend">') == 4
    assert "waiting for YES to the opt-in" in page
    assert len(re.findall(r'<td data-label="Trigger"', page)) == len(transition_rows())
    assert "ask to confirm" in page and "record withdrawn (all)" in page
    assert '<script src="/console/static/vendor/mermaid.min.js"></script>' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN, nothing off-site
    assert "style-src 'self' 'unsafe-inline'" in response.headers["Content-Security-Policy"]

    script = await embedded_agent.client.get("/console/static/vendor/mermaid.min.js")
    assert script.status == 200 and "javascript" in script.content_type
    assert len(await script.read()) > 1_000_000
    css = await embedded_agent.client.get("/console/static/console.css")
    assert css.status == 200


def test_every_effect_is_described() -> None:
    effect = Record(ConsentAction.GRANTED, Targets.FLOW, Method.DOUBLE_OPT_IN, from_flow=True)
    assert describe(effect) == "record granted (flow, double_opt_in)"
    rows = transition_rows()
    assert {r.state for r in rows} == {
        "idle",
        "awaiting_optin",
        "awaiting_clarification",
        "awaiting_reconsent",
    }
    assert all(r.effects or r.state != r.target for r in rows)


def _legend(edges: tuple[object, ...]) -> set[tuple[str, str, str, str]]:
    return {(e.source, e.target, e.triggers, e.outcome) for e in edges}  # type: ignore[attr-defined]


def test_each_flow_is_drawn_apart_with_numbered_arrows() -> None:
    optin, clarification, reconsent = flow_diagrams()
    every = optin.mermaid + clarification.mermaid + reconsent.mermaid
    assert "idle --> idle" not in every
    assert ("idle", "awaiting_optin", "start_all, optin_requested", "ask to confirm") in _legend(
        optin.edges
    )
    assert ("awaiting_optin", "idle", "yes", "YES: grant") in _legend(optin.edges)
    assert ("awaiting_optin", "awaiting_optin", "start_all", "ask again") in _legend(optin.edges)
    assert "help" not in str(_legend(optin.edges))  # what every state does alike: the table
    assert any(
        e[3] == "[silence_means_stop] silence: withdraw all" for e in _legend(clarification.edges)
    )
    assert ("awaiting_reconsent", "idle", "yes", "YES: reconfirm") in _legend(reconsent.edges)
    for diagram in (optin, clarification, reconsent):
        arrows = re.findall(r"--> \w+: (.*)", diagram.mermaid)
        drawn = sorted(int(n) for arrow in arrows for n in arrow.split(", "))
        assert drawn == [e.number for e in diagram.edges]
