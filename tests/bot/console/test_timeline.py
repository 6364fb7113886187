"""The merged timeline: delivery ticks folded into their message, Meta's failure reasons, flow
steps, ledger rows with evidence, one order, and the filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.console.timeline import Kind, TimelineFilter, build_timeline, flow_name
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import ConsentChange, LedgerRepository
from bot.db.transcript import TranscriptRepository, flow_step_id
from flows.consent import ConsentAction, Method, Source

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def test_one_ordered_timeline_from_every_source(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        contact = await ContactRepository(sessions).resolve(wa_id="15550002001", user_id=None)
        assert contact.id is not None
        cid = contact.id
        transcript = TranscriptRepository(sessions)
        ledger = LedgerRepository(sessions)
        await transcript.record_inbound(
            cid, wamid="wamid.IN1", kind="text", text="START", payload_json=None, occurred_at=T0
        )
        await transcript.record_flow_step(
            cid,
            event_id="msg:wamid.IN1",
            from_state="idle",
            to_state="awaiting_optin",
            trigger="start_all",
            label="ask to confirm",
            occurred_at=T0,
        )
        await ledger.apply(
            cid,
            [
                ConsentChange(
                    category="marketing",
                    action=ConsentAction.PENDING,
                    source=Source.WHATSAPP_THREAD,
                    method=Method.DOUBLE_OPT_IN,
                    evidence={"wamid": "wamid.IN1", "shown_text": "Reply YES"},
                    business_name="Acme",
                    policy_version="1",
                    occurred_at=T0,
                    event_key="msg:wamid.IN1:marketing:pending",
                )
            ],
        )
        # Meta's statuses may arrive before we know the message's wamid.
        for status, at in (
            ("delivered", T0 + timedelta(seconds=5)),
            ("read", T0 + timedelta(seconds=30)),
        ):
            await transcript.record_status(wamid="wamid.OUT1", status=status, occurred_at=at)
        await transcript.record_outbound(
            cid,
            message_id="m-1",
            kind="interactive",
            text="Reply YES",
            payload_json=None,
            status="queued",
            occurred_at=T0,
        )
        await transcript.mark_outbound("m-1", status="sent", wamid="wamid.OUT1")
        await transcript.record_outbound(
            cid,
            message_id="m-2",
            kind="template",
            text="Offer",
            payload_json=None,
            status="queued",
            occurred_at=T0 + timedelta(days=2),
        )
        await transcript.mark_outbound("m-2", status="sent", wamid="wamid.OUT2")
        await transcript.record_status(
            wamid="wamid.OUT2",
            status="failed",
            error_code=131050,
            error_title="User stopped marketing messages",
            occurred_at=T0 + timedelta(days=2, seconds=3),
        )

        timeline = await build_timeline(sessions, cid)
        assert [(i.kind, i.title) for i in timeline.items] == [
            (Kind.INBOUND, "Customer wrote (text)"),
            (Kind.FLOW, "Double opt-in: idle → awaiting_optin (ask to confirm)"),
            (Kind.CONSENT, "Consent pending: marketing"),
            (Kind.OUTBOUND, "We sent (interactive)"),
            (Kind.OUTBOUND, "We sent (template)"),
        ]
        prompt, offer = timeline.items[3], timeline.items[4]
        assert [(t.status, t.at) for t in prompt.ticks] == [
            ("delivered", T0 + timedelta(seconds=5)),
            ("read", T0 + timedelta(seconds=30)),
        ]
        assert prompt.status == "read"
        assert offer.status == "failed"
        assert offer.ticks[0].error == "131050: User stopped marketing messages"
        consent = dict(timeline.items[2].details)
        assert consent["evidence: shown_text"] == "Reply YES"
        assert consent["method"] == "double_opt_in"
        assert "read" in prompt.as_text() and prompt.as_json()["ticks"][1]["status"] == "read"

        first_day = TimelineFilter(since=date(2025, 3, 1), until=date(2025, 3, 1))
        day_one = await build_timeline(sessions, cid, first_day)
        assert len(day_one.items) == 4
        later = await build_timeline(sessions, cid, TimelineFilter(since=date(2025, 3, 2)))
        assert [i.title for i in later.items] == ["We sent (template)"]
        only = await build_timeline(sessions, cid, TimelineFilter(kinds=frozenset({Kind.FLOW})))
        assert [i.kind for i in only.items] == [Kind.FLOW]
        capped = await build_timeline(sessions, cid, limit=2)
        assert capped.truncated and [i.kind for i in capped.items] == [Kind.OUTBOUND] * 2
    finally:
        await engine.dispose()


async def test_a_status_of_a_message_out_of_view_stands_alone(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        contact = await ContactRepository(sessions).resolve(wa_id="15550002002", user_id=None)
        assert contact.id is not None
        await TranscriptRepository(sessions).record_status(
            wamid="wamid.ELSEWHERE", status="delivered", contact_id=contact.id, occurred_at=T0
        )
        (item,) = (await build_timeline(sessions, contact.id)).items
        assert (item.kind, item.title, item.status) == (
            Kind.OUTBOUND,
            "Delivery status: delivered",
            "delivered",
        )
    finally:
        await engine.dispose()


async def test_a_flow_step_is_recorded_once(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        contact = await ContactRepository(sessions).resolve(wa_id="15550002003", user_id=None)
        assert contact.id is not None
        transcript = TranscriptRepository(sessions)
        event_id = "msg:wamid." + "HBgLMTU1NTAwMDIwMDMVAgASGBQzQUI5" * 4  # longer than the column
        step = {
            "event_id": event_id,
            "from_state": "idle",
            "to_state": "awaiting_clarification",
            "trigger": "opt_out_intent",
            "occurred_at": T0,
        }
        assert await transcript.record_flow_step(contact.id, **step) is True
        assert await transcript.record_flow_step(contact.id, **step) is False
        assert await transcript.list_for_contact(contact.id) == []
        (row,) = await transcript.list_for_contact(contact.id, flow_steps=True)
        assert (row.direction, row.kind, row.message_id) == (
            "flow",
            "flow_step",
            flow_step_id(event_id),
        )
        assert len(flow_step_id(event_id)) <= 64
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("kinds", "since", "until", "problem"),
    [
        (["chat"], "", "", "unknown kind"),
        ([], "2025-13-01", "", "month"),
        ([], "2025-03-02", "2025-03-01", "before the start"),
    ],
)
def test_bad_filters_say_why(kinds: list[str], since: str, until: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TimelineFilter.from_query(kinds, since, until)


def test_no_kind_chosen_means_every_kind() -> None:
    assert TimelineFilter.from_query([], "", "").kinds == frozenset(Kind)
    chosen = TimelineFilter.from_query(["flow", "consent", "flow"], "2025-03-01", "")
    assert chosen.kinds == {Kind.FLOW, Kind.CONSENT}
    assert chosen.start == T0.replace(hour=0)


def test_a_step_names_its_flow() -> None:
    assert flow_name("idle", "awaiting_optin") == "Double opt-in"
    assert flow_name("awaiting_clarification", "idle") == "Clarification"
    assert flow_name("awaiting_optin", "awaiting_reconsent") == "Re-consent"
    assert flow_name("idle", "idle") == "One step"
