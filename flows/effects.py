"""Concrete effects: what the engine decided, ready for the service to carry out.

They name no transport: a reply is text, buttons or a list row set, or a template reference,
plus the purpose the consent gate judges it by. The service turns them into Cloud API bodies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from flows.consent import ConsentAction, Method, Source
from flows.machine import Message, TimerKind


class Purpose(StrEnum):
    """Why a message goes out; the gate allows each purpose under different conditions."""

    STOP_CONFIRMATION = "stop_confirmation"
    OPTIN_PROMPT = "optin_prompt"
    SERVICE_REPLY = "service_reply"
    BUSINESS = "business"


def reply_id(key: str) -> str:
    """Our id of the reply decided under `key` (event id + effect position): deterministic, so
    a replayed decision queues the same message (which the queue then drops), and the
    conversation can tell which of its messages a customer's answer refers to."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    category: str
    action: ConsentAction
    source: Source
    method: Method
    evidence: Mapping[str, str]
    policy_version: str | None
    event_key: str


@dataclass(frozen=True, slots=True)
class ListRow:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class SendReply:
    """One message to the contact. `key` makes its id deterministic for this event."""

    key: str
    message: Message
    purpose: Purpose
    text: str
    buttons: tuple[tuple[str, str], ...] = ()
    list_button: str | None = None
    list_section: str | None = None
    rows: tuple[ListRow, ...] = ()
    template: str | None = None
    template_language: str | None = None
    template_parameters: tuple[str, ...] = ()
    template_button_payloads: tuple[str, ...] = ()
    categories: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    timer: TimerKind
    token: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: TimerKind


ConcreteEffect = ConsentRecord | SendReply | ScheduleTimer | CancelTimer
