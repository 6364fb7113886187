"""A customer's side of a WhatsApp conversation with the running app, for end-to-end flow tests.

`Chat` posts Meta-shaped, signed webhooks (text, reply buttons, list rows, template quick-reply
buttons, `user_preferences`) to the app's real `/webhook`, waits until the workers and the sender
have drained every queue, and reads back what the customer got (the outbound transcript, and the
fake Graph server's requests in live mode), the consent state and the ledger. It also plays the
business (consent requests on the contact's stream) and the clock (firing flow timers early).

Every step is logged, so the same run that a test asserts on can be printed as a transcript
(`scripts/transcripts.py` writes docs/flows.md from it).

    async with chat_app(settings) as chat:
        await chat.say("STOP")
        assert [r.text for r in await chat.replies()] == [...]
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.appkeys import SERVICES
from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from bot.services import Services
from bot.settings import Settings
from bot.streams import DEAD_LETTER_STREAM, INBOUND_SHARDS, OUTBOUND_STREAM, inbound_stream
from flows import events as ev
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import APP_SECRET, dumps, eventually, meta_timestamp, signed

WABA_ID = "102290129340398"
BUSINESS_NUMBER = "15550783881"
DEFAULT_WA_ID = "15550001001"


@dataclass(frozen=True, slots=True)
class Reply:
    """One message the bot sent (or was refused to send) to the customer, as recorded."""

    message_id: str
    kind: str  # text | interactive | template
    text: str
    status: str  # sandbox | sent | failed | refused | queued
    reason: str | None  # why it failed or was refused
    body: Mapping[str, Any]
    wamid: str | None = None  # Meta's id once sent (live mode), the sandbox's own once kept

    @property
    def choices(self) -> tuple[str, ...]:
        """The ids of everything the customer can tap on this message: reply buttons, list
        rows and a template's quick-reply payloads."""
        quick_replies = tuple(
            str(parameter["payload"])
            for component in (self.body.get("template") or {}).get("components", [])
            if component.get("sub_type") == "quick_reply"
            for parameter in component.get("parameters", [])
            if "payload" in parameter
        )
        return (
            *(i for i, _ in self.buttons),
            *(i for i, _, _ in self.rows),
            *quick_replies,
        )

    @property
    def buttons(self) -> tuple[tuple[str, str], ...]:
        """(id, title) of the reply buttons of an interactive button message."""
        interactive = self.body.get("interactive") or {}
        if interactive.get("type") != "button":
            return ()
        return tuple(
            (b["reply"]["id"], b["reply"]["title"])
            for b in interactive.get("action", {}).get("buttons", [])
        )

    @property
    def rows(self) -> tuple[tuple[str, str, str | None], ...]:
        """(id, title, description) of every row of an interactive list message."""
        interactive = self.body.get("interactive") or {}
        if interactive.get("type") != "list":
            return ()
        return tuple(
            (row["id"], row["title"], row.get("description"))
            for section in interactive.get("action", {}).get("sections", [])
            for row in section.get("rows", [])
        )

    @property
    def template(self) -> str | None:
        template = self.body.get("template")
        return str(template["name"]) if template else None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One consent ledger row, reduced to what the flows decide."""

    category: str
    action: str
    source: str
    method: str
    evidence: Mapping[str, str]
    policy_version: str | None
    event_key: str

    @classmethod
    def of(cls, row: ConsentEvent) -> LedgerRow:
        return cls(
            category=row.category,
            action=row.action,
            source=row.source,
            method=row.method,
            evidence={str(k): str(v) for k, v in json.loads(row.evidence_json).items()},
            policy_version=row.policy_version,
            event_key=row.event_key,
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    """One step of a conversation: `who` is customer, bot, ledger, note, state or rows (the
    whole ledger, `rows`). A customer's tap keeps the wamid of the message it answers
    (`context`), so a transcript can say which message that was."""

    who: str
    text: str
    reply: Reply | None = None
    row: LedgerRow | None = None
    context: str | None = None
    rows: tuple[LedgerRow, ...] = ()


@dataclass
class _Cursor:
    replies: set[int] = field(default_factory=set)
    logged_replies: set[int] = field(default_factory=set)
    logged_ledger: set[int] = field(default_factory=set)


def _now_ts(customer: str) -> str:
    return str(meta_timestamp(customer))


def _wamid() -> str:
    return f"wamid.{uuid.uuid4().hex.upper()}"


def envelope(field_name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook body with one change, as Meta posts it."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": field_name, "value": dict(value)}]}],
    }


def message_webhook(
    wa_id: str, message: Mapping[str, Any], *, name: str = "Ana", phone_number_id: str
) -> dict[str, Any]:
    """A `messages` webhook carrying one customer message (`message` has type and content)."""
    return envelope(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": BUSINESS_NUMBER,
                "phone_number_id": phone_number_id,
            },
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "timestamp": _now_ts(wa_id), **message}],
        },
    )


class Chat:
    """Drives the app at `client` as customers (`wa_id` each) and as the business."""

    def __init__(
        self,
        client: TestClient[Any, Any],
        *,
        wa_id: str = DEFAULT_WA_ID,
        graph: FakeGraph | None = None,
        app_secret: str = APP_SECRET,
        name: str = "Ana",
    ) -> None:
        self.client = client
        self.wa_id = wa_id
        self.graph = graph
        self.name = name
        self._secret = app_secret
        self._cursors: dict[str, _Cursor] = {}
        self._graph_seen = 0
        self.log: list[LogLine] = []

    # ------------------------------------------------------------------------ the app
    @property
    def services(self) -> Services:
        return self.client.server.app[SERVICES]

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def phone_number_id(self) -> str:
        return self.settings.phone_number_id

    async def contact(self, wa_id: str | None = None) -> Contact:
        """The contact (created when the business knows them before they wrote)."""
        contact = await self.services.contacts.resolve(wa_id=wa_id or self.wa_id, user_id=None)
        assert contact.id is not None
        return contact

    async def contact_id(self, wa_id: str | None = None) -> int:
        contact = await self.contact(wa_id)
        assert contact.id is not None
        return contact.id

    # ---------------------------------------------------------------- the customer writes
    async def post(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a signed webhook; return the app's answer (it must be 200)."""
        body = dumps(payload)
        response = await self.client.post("/webhook", data=body, headers=signed(body, self._secret))
        answer = await response.json()
        assert response.status == 200, answer
        return dict(answer)

    async def send_message(
        self, message: Mapping[str, Any], *, wa_id: str | None, shown: str, wait: bool = True
    ) -> str:
        """Post one customer message (a dict with `type` and its content); return its wamid."""
        wa_id = wa_id or self.wa_id
        wamid = str(message.get("id") or _wamid())
        payload = message_webhook(
            wa_id, {"id": wamid, **message}, name=self.name, phone_number_id=self.phone_number_id
        )
        context = message.get("context")
        answered = str(context["id"]) if isinstance(context, Mapping) else None
        self._note("customer", shown, wa_id, context=answered)
        await self.post(payload)
        if wait:
            await self.settle(wa_id)
        return wamid

    async def say(self, text: str, *, wa_id: str | None = None, wait: bool = True) -> str:
        """The customer types `text`."""
        return await self.send_message(
            {"type": "text", "text": {"body": text}}, wa_id=wa_id, shown=text, wait=wait
        )

    async def tap(
        self,
        button_id: str,
        title: str,
        *,
        wa_id: str | None = None,
        context: str | None = None,
        wait: bool = True,
    ) -> str:
        """The customer taps a reply button of an interactive message (`button_reply`).

        `context` is the wamid of the message the button belongs to (`offering` finds it);
        without one, a wamid nobody recorded, which counts as answering the open question."""
        message: dict[str, Any] = {
            "type": "interactive",
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": button_id, "title": title},
            },
        }
        message["context"] = {"from": BUSINESS_NUMBER, "id": context or _wamid()}
        return await self.send_message(message, wa_id=wa_id, shown=f"[taps {title}]", wait=wait)

    async def choose(
        self,
        row_id: str,
        title: str,
        description: str = "",
        *,
        wa_id: str | None = None,
        context: str | None = None,
        wait: bool = True,
    ) -> str:
        """The customer picks a row of an interactive list (`list_reply`) of the message
        `context` (as for `tap`)."""
        message = {
            "type": "interactive",
            "context": {"from": BUSINESS_NUMBER, "id": context or _wamid()},
            "interactive": {
                "type": "list_reply",
                "list_reply": {"id": row_id, "title": title, "description": description},
            },
        }
        return await self.send_message(message, wa_id=wa_id, shown=f"[chooses {title}]", wait=wait)

    async def template_button(
        self,
        payload: str,
        text: str,
        *,
        wa_id: str | None = None,
        context: str | None = None,
        wait: bool = True,
    ) -> str:
        """The customer taps a quick-reply button of a template (Meta's `button` type) of the
        message `context` (as for `tap`)."""
        message = {
            "type": "button",
            "context": {"from": BUSINESS_NUMBER, "id": context or _wamid()},
            "button": {"payload": payload, "text": text},
        }
        return await self.send_message(
            message, wa_id=wa_id, shown=f"[taps template button {text}]", wait=wait
        )

    async def meta_preferences(
        self,
        value: str,
        *,
        wa_id: str | None = None,
        category: str = "marketing_messages",
        wait: bool = True,
    ) -> None:
        """Meta reports the customer's choice in WhatsApp's own settings (`user_preferences`)."""
        wa_id = wa_id or self.wa_id
        self._note("note", f"WhatsApp reports: the customer chose '{value}' for {category}", wa_id)
        await self.post(
            envelope(
                "user_preferences",
                {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": BUSINESS_NUMBER,
                        "phone_number_id": self.phone_number_id,
                    },
                    "contacts": [{"profile": {"name": self.name}, "wa_id": wa_id}],
                    "user_preferences": [
                        {
                            "wa_id": wa_id,
                            "detail": f"User requested to {value} marketing messages",
                            "category": category,
                            "value": value,
                            "timestamp": meta_timestamp(wa_id),
                        }
                    ],
                },
            )
        )
        if wait:
            await self.settle(wa_id)

    # ---------------------------------------------------------------- the business asks
    async def request(
        self,
        kind: str,
        categories: Sequence[str],
        *,
        wa_id: str | None = None,
        source: str = "api",
        evidence: Mapping[str, str] | None = None,
        policy_version: str | None = None,
        deadline: datetime | None = None,
        deadline_policy: str | None = None,
        locale: str | None = None,
        event_id: str | None = None,
        wait: bool = True,
    ) -> ev.ConsentRequest:
        """The business asks for consent (`kind` "optin" or "reconsent"), on the contact's
        own stream, as the business API does."""
        wa_id = wa_id or self.wa_id
        contact = await self.contact(wa_id)
        assert contact.id is not None
        event = ev.ConsentRequest(
            event_id=event_id or f"request:{uuid.uuid4().hex}",
            phone_number_id=self.phone_number_id,
            occurred_at=datetime.now(UTC),
            contact=ev.ContactRef(wa_id=wa_id, user_id=contact.user_id),
            contact_id=contact.id,
            kind=kind,
            categories=tuple(categories),
            source=source,
            evidence_json=json.dumps(dict(evidence or {})),
            policy_version=policy_version,
            deadline=deadline,
            deadline_policy=deadline_policy,
            locale=locale,
        )
        what = "a double opt-in" if kind == "optin" else f"re-consent to policy {policy_version}"
        self._note("note", f"The business asks for {what} ({', '.join(categories)})", wa_id)
        accepted = await self.services.inbound_queue.accept([event])
        assert accepted.queued == 1, accepted
        if wait:
            await self.settle(wa_id)
        return event

    # -------------------------------------------------------------------- the clock
    async def fire_timers(self, after: timedelta, *, wa_id: str | None = None) -> int:
        """Fire every flow timer due within `after` from now (as if that much time passed)."""
        fired = await self.services.timers.fire_due(datetime.now(UTC) + after)
        hours = after.total_seconds() / 3600
        self._note("note", f"{hours:g} hours pass without an answer", wa_id or self.wa_id)
        await self.settle(wa_id)
        return fired

    async def timer_due(self, kind: str, wa_id: str | None = None) -> float | None:
        return await self.services.timers.due_at(await self.contact_id(wa_id), kind)

    # ------------------------------------------------------------------ waiting
    async def wait_idle(self, within: float = 15.0) -> None:
        """Until every inbound stream and the outbound queue are empty (handled and acked).

        One MULTI reads every length at once: a worker enqueues replies before it acks the
        event that caused them, and the sender reports a refusal before it acks the message,
        so a consistent snapshot of all zeroes means nothing is left to do.
        """
        redis = self.services.redis

        async def idle() -> bool:
            pipe = redis.pipeline(transaction=True)
            for shard in range(INBOUND_SHARDS):
                pipe.xlen(inbound_stream(shard))
            pipe.xlen(OUTBOUND_STREAM)
            return sum(int(n) for n in await pipe.execute()) == 0

        await eventually(idle, within=within, interval=0.02)
        dead = await redis.xrange(DEAD_LETTER_STREAM)
        assert not dead, f"events went to the dead-letter stream: {dead}"

    async def settle(self, wa_id: str | None = None) -> None:
        """Wait until idle, then log what the bot sent and recorded for this contact."""
        await self.wait_idle()
        await self._log_new(wa_id or self.wa_id)

    # ------------------------------------------------------------------ reading back
    async def replies(self, wa_id: str | None = None) -> list[Reply]:
        """The messages sent to the contact since the last call, oldest first."""
        wa_id = wa_id or self.wa_id
        cursor = self._cursor(wa_id)
        fresh = [r for r in await self.all_replies(wa_id) if r[0] not in cursor.replies]
        cursor.replies.update(i for i, _ in fresh)
        return [reply for _, reply in fresh]

    async def all_replies(self, wa_id: str | None = None) -> list[tuple[int, Reply]]:
        """(row id, reply) of every outbound transcript row of the contact, in order."""
        contact = await self.services.contacts.find(wa_id or self.wa_id)
        if contact is None or contact.id is None:
            return []
        rows = await self.services.transcript.list_for_contact(contact.id, limit=1000)
        outbound = sorted((r for r in rows if r.direction == "outbound"), key=lambda r: r.id or 0)
        return [
            (
                row.id or 0,
                Reply(
                    message_id=row.message_id or "",
                    kind=row.kind,
                    text=row.text or "",
                    status=row.status or "",
                    reason=row.error_title,
                    body=json.loads(row.payload_json or "{}"),
                    wamid=row.wamid,
                ),
            )
            for row in outbound
        ]

    async def offering(self, choice_id: str, wa_id: str | None = None) -> Reply:
        """The newest message sent to the contact that offers `choice_id` (a reply button, list
        row or quick reply): the one a customer taps it on."""
        for _, reply in reversed(await self.all_replies(wa_id)):
            if choice_id in reply.choices:
                return reply
        raise AssertionError(f"no message offered {choice_id!r}")

    def graph_requests(self) -> list[Any]:
        """The bodies the fake Graph server received since the last call (live mode)."""
        assert self.graph is not None, "no FakeGraph: the app runs in sandbox mode"
        fresh = self.graph.requests[self._graph_seen :]
        self._graph_seen = len(self.graph.requests)
        return fresh

    async def consent(self, wa_id: str | None = None) -> dict[str, str]:
        """category -> status, for every category the business has."""
        contact = await self.services.contacts.find(wa_id or self.wa_id)
        current = {}
        if contact is not None and contact.id is not None:
            current = await self.services.ledger.current(contact.id)
        return {
            c.name: current[c.name].status.value if c.name in current else "none"
            for c in self.services.language.categories
        }

    async def show_consent(self, wa_id: str | None = None) -> dict[str, str]:
        """`consent()`, also written to the log (for transcripts)."""
        wa_id = wa_id or self.wa_id
        statuses = await self.consent(wa_id)
        listed = ", ".join(f"{category} {status}" for category, status in statuses.items())
        self._note("state", f"consent: {listed}", wa_id)
        return statuses

    async def show_step(self, wamid: str, wa_id: str | None = None) -> str:
        """The conversation step the transcript recorded for the customer's message `wamid`,
        also written to the log (for transcripts)."""
        wa_id = wa_id or self.wa_id
        contact_id = await self.contact_id(wa_id)
        rows = await self.services.transcript.list_for_contact(
            contact_id, limit=1000, flow_steps=True
        )
        steps = [
            r.text or ""
            for r in rows
            if r.direction == "flow"
            and json.loads(r.payload_json or "{}").get("event_id") == f"msg:{wamid}"
        ]
        assert len(steps) == 1, f"{len(steps)} steps recorded for {wamid}"
        self._note("note", f"the transcript keeps it, with the step {steps[0]}", wa_id)
        return steps[0]

    async def ledger(self, wa_id: str | None = None) -> list[LedgerRow]:
        """Every ledger row of the contact, oldest first."""
        contact = await self.services.contacts.find(wa_id or self.wa_id)
        if contact is None or contact.id is None:
            return []
        return [LedgerRow.of(r) for r in await self.services.ledger.events(contact.id)]

    async def show_ledger(self, wa_id: str | None = None) -> list[LedgerRow]:
        """`ledger()`, also written to the log as one line (for transcripts)."""
        wa_id = wa_id or self.wa_id
        rows = await self.ledger(wa_id)
        prefix = "" if wa_id == self.wa_id else f"({wa_id}) "
        text = "; ".join(f"{row.action} {row.category}" for row in rows)
        self.log.append(LogLine("rows", prefix + f"ledger: {text}", rows=tuple(rows)))
        return rows

    async def state(self, wa_id: str | None = None) -> str:
        """Where the contact's conversation stands (idle, awaiting_optin...)."""
        record = await self.services.ledger.conversation(await self.contact_id(wa_id))
        return "idle" if record is None else record.state

    async def window_open(self, wa_id: str | None = None) -> bool:
        return await self.services.window.is_open(await self.contact_id(wa_id), datetime.now(UTC))

    # -------------------------------------------------------------------- the log
    def _cursor(self, wa_id: str) -> _Cursor:
        return self._cursors.setdefault(wa_id, _Cursor())

    def _note(self, who: str, text: str, wa_id: str, *, context: str | None = None) -> None:
        prefix = "" if wa_id == self.wa_id else f"({wa_id}) "
        self.log.append(LogLine(who, prefix + text, context=context))

    async def _log_new(self, wa_id: str) -> None:
        cursor = self._cursor(wa_id)
        contact = await self.services.contacts.find(wa_id)
        if contact is not None and contact.id is not None:
            for event in await self.services.ledger.events(contact.id):
                assert event.id is not None
                if event.id not in cursor.logged_ledger:
                    cursor.logged_ledger.add(event.id)
                    row = LedgerRow.of(event)
                    self.log.append(
                        LogLine("ledger", f"{row.action} {row.category} ({row.method})", row=row)
                    )
        for row_id, reply in await self.all_replies(wa_id):
            if row_id not in cursor.logged_replies:
                cursor.logged_replies.add(row_id)
                self.log.append(LogLine("bot", reply.text, reply=reply))


@asynccontextmanager
async def chat_app(
    settings: Settings, *, graph: FakeGraph | None = None, wa_id: str = DEFAULT_WA_ID
) -> AsyncIterator[Chat]:
    """Run the app for `settings` (every role, as `optin-bot serve`) and a Chat against it."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield Chat(client, graph=graph, wa_id=wa_id, app_secret=settings.app_secret or APP_SECRET)
