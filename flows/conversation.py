"""The data the engine works on: the conversation's memory, what came in, and what it may know.

All of it is plain frozen data with an exact JSON round trip, because the conversation is stored
between events (one row per contact) and replayed after a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flows.consent import Category, ConsentStatus, Method, Source
from flows.locale_catalog import LocaleCatalog
from flows.machine import State, Trigger


@dataclass(frozen=True, slots=True)
class FlowInput:
    """One event as the conversation sees it (made by `flows.classify` or by the service)."""

    trigger: Trigger
    event_id: str
    occurred_at: datetime
    categories: tuple[str, ...] = ()
    locale: str | None = None
    source: Source = Source.WHATSAPP_THREAD
    method: Method = Method.KEYWORD
    evidence: Mapping[str, str] = field(default_factory=dict)
    policy_version: str | None = None
    deadline: datetime | None = None
    timer_token: str | None = None
    deadline_policy: str | None = None
    # A reply button or list row: our id of the message it belongs to (from Meta's `context`),
    # when the service knows that message. None: typed, or a message we cannot identify.
    answers: str | None = None
    # A business request whose question the business sends itself (a campaign template).
    prompt_id: str | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where one contact's conversation stands, and what its current flow is about."""

    state: State = State.IDLE
    token: str = ""
    categories: tuple[str, ...] = ()
    source: Source | None = None
    method: Method | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    policy_version: str | None = None
    deadline: datetime | None = None
    deadline_policy: str | None = None  # "lapse" | "keep"; None: the business's FlowPolicy
    # Our id of the message that asked the flow's question ("" when unknown): a button or list
    # row answers the flow only when it belongs to this message (`flows.engine.step`).
    prompt: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "state": self.state.value,
                "token": self.token,
                "categories": list(self.categories),
                "source": self.source.value if self.source else None,
                "method": self.method.value if self.method else None,
                "evidence": dict(self.evidence),
                "policy_version": self.policy_version,
                "deadline": self.deadline.isoformat() if self.deadline else None,
                "deadline_policy": self.deadline_policy,
                "prompt": self.prompt,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Conversation:
        data = json.loads(text)
        return cls(
            state=State(data["state"]),
            token=str(data["token"]),
            categories=tuple(data["categories"]),
            source=Source(data["source"]) if data.get("source") else None,
            method=Method(data["method"]) if data.get("method") else None,
            evidence={str(k): str(v) for k, v in data.get("evidence", {}).items()},
            policy_version=data.get("policy_version"),
            deadline=datetime.fromisoformat(data["deadline"]) if data.get("deadline") else None,
            deadline_policy=data.get("deadline_policy"),
            prompt=str(data.get("prompt") or ""),
        )


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """A Meta-approved template the business named in configuration, in one language."""

    name: str
    language: str


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    """The business's settings that shape the flows."""

    business_name: str
    optin_ttl: timedelta = timedelta(hours=48)
    clarification_ttl: timedelta = timedelta(hours=24)
    silence_means_stop: bool = True
    deadline_lapses: bool = True
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class FlowContext:
    """Everything else the engine may know when it decides; read by the service beforehand."""

    categories: tuple[Category, ...]
    consents: Mapping[str, ConsentStatus]
    catalog: LocaleCatalog
    policy: FlowPolicy
    window_open: bool
    optin_template: TemplateRef | None = None

    def status(self, category: str) -> ConsentStatus:
        return self.consents.get(category, ConsentStatus.NONE)
