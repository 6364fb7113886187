"""Writes docs/flows.md: every consent flow, run against the real app, as the customer saw it.

Each flow runs the whole service (webhook, workers, sender) in sandbox mode on the embedded stack
(SQLite + the in-process Redis, nothing leaves the machine), driven through signed, Meta-shaped
webhooks by the test suite's customer driver (`tests/fakes/chat.py`). What the document shows is
therefore what the code does, not what someone remembered it to do; a test regenerates it and
fails when the committed file is out of date. The output is deterministic: fixed numbers, no
times, no ids. Every bot message that offers buttons or a list gets a number (`#1`) in place of
its wamid, and each tap names the number of the message it was made on (Meta's `context`): a
customer taps a message's own buttons, the newest by default (`tap`, `choose`), an older one
when the flow says so.

    python scripts/transcripts.py [--output docs/flows.md]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.settings import Settings  # noqa: E402
from flows.mermaid import to_mermaid  # noqa: E402
from flows.replies import ids  # noqa: E402
from tests.fakes.chat import Chat, LogLine, Reply, chat_app  # noqa: E402

BUSINESS = "Acme Shoes"
APP_SECRET = "transcripts"
OUTPUT = ROOT / "docs" / "flows.md"

Play = Callable[[Chat], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Flow:
    title: str
    summary: str
    play: Play
    settings: Mapping[str, Any] = field(default_factory=dict)


async def tap(chat: Chat, button_id: str, title: str, *, on: Reply | None = None) -> None:
    """The customer taps a reply button of message `on`, by default the newest offering it."""
    message = on or await chat.offering(button_id)
    await chat.tap(button_id, title, context=message.wamid)


async def choose(chat: Chat, row_id: str, title: str) -> None:
    """The customer picks a list row on the newest message offering it."""
    message = await chat.offering(row_id)
    await chat.choose(row_id, title, context=message.wamid)


async def template_button(chat: Chat, payload: str, text: str) -> None:
    """The customer taps a quick reply of the newest template offering it."""
    message = await chat.offering(payload)
    await chat.template_button(payload, text, context=message.wamid)


async def _opt_in(chat: Chat) -> None:
    await chat.say("START")
    await tap(chat, ids.OPTIN_YES, "Yes")


async def _already_opted_in(chat: Chat) -> None:
    """Start from a customer who opted in to everything earlier (shown in flow 2)."""
    await _opt_in(chat)
    chat.log.clear()
    await chat.show_consent()


async def keyword_stop(chat: Chat) -> None:
    await chat.say("STOP")
    await chat.show_consent()


async def stop_after_opting_in(chat: Chat) -> None:
    await _opt_in(chat)
    await chat.say("STOP")
    await chat.show_consent()


async def one_category(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.say("STOP PROMOTIONS")
    await chat.show_consent()
    await chat.say("START PROMOTIONS")
    await chat.show_consent()


async def clarify_answered(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.say("please stop sending me these")
    await tap(chat, ids.CLARIFY_STOP + "marketing", "Stop promotions")
    await chat.show_consent()


async def clarify_silence(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.say("no more promotions")
    await chat.fire_timers(timedelta(hours=25))
    await chat.show_consent()


async def preferences(chat: Chat) -> None:
    await chat.say("PREFERENCES")
    await choose(chat, ids.PREFERENCE + "order_updates", "order updates")
    await chat.say("PREFERENCES")
    await chat.show_consent()


async def double_opt_in(chat: Chat) -> None:
    await chat.say("START")
    await chat.show_consent()
    await tap(chat, ids.OPTIN_YES, "Yes")
    await chat.show_consent()


async def choosing_categories(chat: Chat) -> None:
    await chat.say("START")
    await tap(chat, ids.OPTIN_CHOOSE, "Choose")
    await choose(chat, ids.OPTIN_PICK + "order_updates", "order updates")
    await chat.show_consent()
    await chat.show_ledger()


async def double_opt_in_declined(chat: Chat) -> None:
    await chat.say("START")
    await chat.say("No thanks")
    await chat.show_consent()


async def double_opt_in_expired(chat: Chat) -> None:
    await chat.say("STOP")
    await chat.say("START")
    await chat.fire_timers(timedelta(hours=49))
    await chat.show_consent()


async def stop_while_asked(chat: Chat) -> None:
    await chat.say("START")
    await chat.say("STOP")
    await chat.show_consent()


async def old_prompt_tapped(chat: Chat) -> None:
    await chat.say("START")
    first = await chat.offering(ids.OPTIN_YES)
    await chat.say("STOP")
    await chat.say("START")
    await chat.show_consent()
    tapped = await chat.tap(ids.OPTIN_YES, "Yes", context=first.wamid)
    await chat.show_step(tapped)
    await chat.show_consent()
    await chat.show_ledger()


async def business_asks_in_window(chat: Chat) -> None:
    await chat.say("Hi, I just signed up on your website")
    await chat.request("optin", ["marketing"], source="website", evidence={"form": "signup"})
    await chat.say("yes")
    await chat.show_consent()


async def business_asks_with_template(chat: Chat) -> None:
    await chat.request("optin", ["marketing"], source="website", evidence={"form": "signup"})
    await template_button(chat, ids.OPTIN_YES, "Yes")
    await chat.show_consent()


async def business_asks_without_template(chat: Chat) -> None:
    await chat.request("optin", ["marketing"], source="website", evidence={"form": "signup"})
    await chat.show_consent()


def _deadline() -> datetime:
    return datetime.now(UTC) + timedelta(days=7)


async def reconsent(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.request("reconsent", ["marketing"], policy_version="2", deadline=_deadline())
    await chat.say("YES")
    await chat.show_consent()


async def reconsent_lapsed(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.request("reconsent", ["marketing"], policy_version="2", deadline=_deadline())
    await chat.fire_timers(timedelta(days=8))
    await chat.show_consent()


async def help_and_quiet(chat: Chat) -> None:
    await chat.say("Where is my parcel?")
    await chat.say("STOP PROMOTIONS")
    await chat.say("HELP")


async def meta_signals(chat: Chat) -> None:
    await _already_opted_in(chat)
    await chat.template_button("STOP_PROMOTIONS", "Stop promotions")
    await chat.meta_preferences("resume")
    await chat.meta_preferences("stop")
    await chat.show_consent()


async def spanish(chat: Chat) -> None:
    await chat.say("BAJA OFERTAS")
    await chat.say("AYUDA")
    await chat.say("BAJA")
    await chat.show_consent()


TEMPLATE = {"optin_template": "optin_confirm", "template_languages": (("en", "en_US"),)}

FLOWS: tuple[Flow, ...] = (
    Flow(
        "Keyword opt-out from someone we hold no consent for",
        "STOP acts at once, records every category as opted out (do not contact) and sends one "
        "confirmation that names the business and how to resume.",
        keyword_stop,
    ),
    Flow(
        "Keyword opt-out after opting in",
        "Every category the customer agreed to is withdrawn by one STOP.",
        stop_after_opting_in,
    ),
    Flow(
        "Stopping and resuming one category",
        "STOP or START followed by a category (or one of its aliases) acts on that category only.",
        one_category,
    ),
    Flow(
        "Unclear wish to stop, answered",
        "A message that sounds like an opt-out but is not a keyword gets one question with "
        "three buttons; the answer is applied.",
        clarify_answered,
    ),
    Flow(
        "Unclear wish to stop, never answered",
        "With the default CLARIFICATION_SILENCE=stop_all, no answer within 24 hours is taken as "
        "a stop of everything.",
        clarify_silence,
    ),
    Flow(
        "The preferences menu",
        "PREFERENCES sends a list with one row per category and its status; choosing a row "
        "turns that category on or off.",
        preferences,
    ),
    Flow(
        "Double opt-in",
        "START asks to confirm the default categories; the categories stay pending until the "
        "customer answers YES, which is recorded with the exact text they were shown.",
        double_opt_in,
    ),
    Flow(
        "Choosing categories one by one",
        "A bare START asks for the default categories; its Choose button lists them, and each "
        "one picked is granted on its own: the ledger records exactly that category, the rest "
        "stay asked until YES, NO or the expiry.",
        choosing_categories,
    ),
    Flow(
        "Double opt-in declined",
        "NO ends the request and nothing is granted.",
        double_opt_in_declined,
    ),
    Flow(
        "Double opt-in never answered",
        "After 48 hours the request expires, and a customer who had opted out before the "
        "request is opted out again, not merely 'none'.",
        double_opt_in_expired,
    ),
    Flow(
        "STOP while a request is waiting",
        "STOP wins in every state: the pending request ends, its timer is cancelled and "
        "everything is withdrawn.",
        stop_while_asked,
    ),
    Flow(
        "A button of an earlier prompt",
        "An answer belongs to its question: a tap on a message that no longer asks anything "
        "(here the first prompt, ended by STOP) is kept in the transcript, changes nothing and "
        "gets one short reply; the open prompt (#2) still waits for its own answer.",
        old_prompt_tapped,
    ),
    Flow(
        "The business asks, while the customer's window is open",
        "A business request (API, campaign) becomes an interactive prompt with Yes/No buttons "
        "when the customer wrote in the last 24 hours.",
        business_asks_in_window,
    ),
    Flow(
        "The business asks, outside the window, with a template",
        "Outside the 24-hour window only an approved template may go (OPTIN_TEMPLATE); its "
        "quick-reply Yes button answers it.",
        business_asks_with_template,
        TEMPLATE,
    ),
    Flow(
        "The business asks, outside the window, without a template",
        "Without a template the consent gate refuses the prompt; the transcript keeps it as "
        "refused, with the reason.",
        business_asks_without_template,
    ),
    Flow(
        "Re-consent to a new policy",
        "A re-consent campaign asks under policy version 2 (its template goes out with the "
        "campaign, not from the conversation, so it is not shown here); YES reconfirms under "
        "that version.",
        reconsent,
    ),
    Flow(
        "Re-consent deadline passes",
        "With the default RECONSENT_DEADLINE_POLICY=lapse, no answer by the deadline lapses "
        "the consent.",
        reconsent_lapsed,
    ),
    Flow(
        "HELP, and messages the bot does not answer",
        "Any other message opens the 24-hour window and is kept, without a reply; HELP names "
        "the business, this customer's subscriptions and the commands.",
        help_and_quiet,
    ),
    Flow(
        "Meta's own signals",
        "A template's 'Stop promotions' button and the customer's choices in WhatsApp's own "
        "marketing settings (user_preferences webhooks) change the marketing consent.",
        meta_signals,
    ),
    Flow(
        "In another language",
        "Keywords and aliases work in every locale, and the bot answers in the customer's "
        "language.",
        spanish,
    ),
)


async def run_flows(flows: list[tuple[int, Flow]], settings: Settings) -> dict[int, list[LogLine]]:
    """Run `flows` one after another on one app, each with its own customer."""
    logs = {}
    async with chat_app(settings) as app:
        for number, flow in flows:
            chat = Chat(app.client, wa_id=f"1555010{number:04d}", app_secret=APP_SECRET)
            await flow.play(chat)
            logs[number] = list(chat.log)
    return logs


def _ledger_key(line: LogLine) -> tuple[str, ...] | None:
    if line.who != "ledger" or line.row is None:
        return None
    row = line.row
    return (row.action, row.method, row.source, row.policy_version or "")


def group_ledger_rows(log: list[LogLine]) -> list[list[LogLine]]:
    """Consecutive ledger rows of one decision (same action, method, source, policy) together,
    every other line on its own."""
    groups: list[list[LogLine]] = []
    for line in log:
        key = _ledger_key(line)
        if key is not None and groups and _ledger_key(groups[-1][0]) == key:
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def message_numbers(log: list[LogLine]) -> dict[str, str]:
    """`#1`, `#2`… for the wamid of each message of the flow that offers something to tap, in
    the order they were sent: what a tap's context is shown as (wamids change every run). None
    in a flow where no tap names one of them: there is nothing to tell apart."""
    numbers: dict[str, str] = {}
    for line in log:
        reply = line.reply
        if reply is not None and reply.wamid and reply.choices and reply.wamid not in numbers:
            numbers[reply.wamid] = f"#{len(numbers) + 1}"
    if not any(line.who == "customer" and line.context in numbers for line in log):
        return {}
    return numbers


def render_lines(lines: list[LogLine], numbers: Mapping[str, str]) -> list[str]:
    pad = " " * 13
    line = lines[0]
    if line.who == "customer":
        on = numbers.get(line.context or "")
        if on is not None and line.text.endswith("]"):
            return [f"Customer   > {line.text[:-1]} on {on}]"]
        return [f"Customer   > {line.text}"]
    if line.who == "note":
        return [f"           … {line.text}"]
    if line.who == "state":
        return [f"           = {line.text}"]
    if line.who == "rows":
        width = max((len(row.action) for row in line.rows), default=0)
        return [
            "           = ledger, oldest first (action, category):",
            *(pad + f"  {row.action.ljust(width)}  {row.category}" for row in line.rows),
        ]
    if line.who == "ledger" and line.row is not None:
        row = line.row
        categories = ", ".join(other.row.category for other in lines if other.row is not None)
        policy = f", policy {row.policy_version}" if row.policy_version != "1" else ""
        return [
            f"  ledger   + {row.action} {categories} "
            f"(method {row.method}, source {row.source}{policy})"
        ]
    reply = line.reply
    assert reply is not None
    text = reply.text.split("\n")
    out = [f"{BUSINESS} < {text[0]}", *(pad + t if t else "" for t in text[1:])]
    number = numbers.get(reply.wamid or "")
    # The message's number leads the first line of what can be tapped on it.
    lead = iter([f"{number} "] if number else [])
    indent = " " * (len(number) + 1) if number else ""
    if reply.buttons:
        buttons = " ".join(f"[{title}]" for _, title in reply.buttons)
        out.append(pad + next(lead, indent) + buttons)
    for _, title, description in reply.rows:
        described = f": {description}" if description else ""
        out.append(pad + next(lead, indent) + f"≡ {title}{described}")
    if reply.template is not None:
        language = reply.body["template"]["language"]["code"]
        out.append(pad + next(lead, "") + f"(as template {reply.template}, language {language})")
    if reply.status == "refused":
        out.append(pad + f"(NOT SENT: {reply.reason})")
    return out


def render(results: list[tuple[Flow, list[LogLine]]]) -> str:
    parts = [
        "# Consent flows",
        "",
        "<!-- Generated by scripts/transcripts.py from real runs of the app; do not edit. -->",
        "",
        "Each flow below is a real run of optin-bot (sandbox mode, embedded stack), driven",
        "through signed webhooks as WhatsApp sends them. `>` is the customer, `<` the bot,",
        "`+` rows appended to the consent ledger (one per category), `…` something that",
        "happens outside the chat, `=` the consent state (or the whole ledger) at that point.",
        "Where the customer taps, each bot message that offers buttons or a list is numbered",
        "(`#1`) and a tap names the message it was made on (`[taps Yes on #1]`), as Meta's",
        "`context` does with the message's wamid. Regenerate with",
        "`python scripts/transcripts.py`.",
        "",
        "## The conversation state machine",
        "",
        "Drawn from the transition table itself (`optin-bot flows --mermaid`).",
        "",
        "```mermaid",
        to_mermaid().rstrip("\n"),
        "```",
    ]
    for number, (flow, log) in enumerate(results, 1):
        parts += ["", f"## {number}. {flow.title}", "", flow.summary, "", "```text"]
        numbers = message_numbers(log)
        for lines in group_ledger_rows(log):
            parts += render_lines(lines, numbers)
        parts.append("```")
    return "\n".join(parts) + "\n"


def flow_settings(database: Path, overrides: Mapping[str, Any]) -> Settings:
    """The app's settings for flows run on the embedded stack with the SQLite file `database`."""
    return Settings(
        app_secret=APP_SECRET,
        business_name=BUSINESS,
        database_url=f"sqlite+aiosqlite:///{database}",
        redis_url=f"memory://{uuid.uuid4().hex}",
        **dict(overrides),
    )


async def generate() -> str:
    """The whole document, from fresh runs of every flow (one app per distinct settings)."""
    groups: dict[str, list[tuple[int, Flow]]] = {}
    for number, flow in enumerate(FLOWS, 1):
        groups.setdefault(repr(sorted(flow.settings.items())), []).append((number, flow))
    logs: dict[int, list[LogLine]] = {}
    with tempfile.TemporaryDirectory(prefix="optin-transcripts-") as workdir:
        for n, group in enumerate(groups.values()):
            settings = flow_settings(Path(workdir) / f"flows{n}.db", group[0][1].settings)
            logs.update(await run_flows(group, settings))
    return render([(flow, logs[number]) for number, flow in enumerate(FLOWS, 1)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/flows.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    text = asyncio.run(generate())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(FLOWS)} flows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
