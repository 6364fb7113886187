"""A campaign end to end: who is messaged, with what, and what their answers and Meta's
statuses make of each recipient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.replies import ids
from tests.bot.campaigns.conftest import Harness
from tests.fakes.consent_seed import wa_id_of


async def test_each_recipient_gets_the_template_once_and_their_answer_is_tracked(
    harness: Harness,
) -> None:
    everyone = await harness.seed(12)
    recent = await harness.seed(3, start=100, since=datetime.now(UTC) - timedelta(days=10))

    campaign_id = await harness.start()
    report = await harness.finished(campaign_id)

    assert report["counts"]["recipients"] == 12
    assert report["counts"]["queued"] == 12
    # Meta accepted each: the sender marks them sent (in batches, before Meta's statuses).
    await harness.until(campaign_id, lambda r: r["counts"]["sent"] == 12, within=5)
    assert harness.messaged() == dict.fromkeys(everyone, 1)
    assert not set(recent) & set(harness.messaged())
    body = harness.templates()[0]
    assert body["template"]["name"] == "reconsent_v2"
    assert body["template"]["language"]["code"] == "en_US"
    assert body["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Acme Shoes"}
    ]
    payloads = [c["parameters"][0]["payload"] for c in body["template"]["components"][1:]]
    assert payloads == [ids.RECONSENT_YES, ids.RECONSENT_NO]
    assert body["biz_opaque_callback_data"].startswith(f"campaign:{campaign_id}:")
    assert await harness.chat.state(everyone[0]) == "awaiting_reconsent"

    assert await harness.report_statuses("delivered") == 12
    await harness.chat.template_button(ids.RECONSENT_YES, "Yes", wa_id=everyone[0])
    await harness.chat.template_button(ids.RECONSENT_NO, "No", wa_id=everyone[1])
    await harness.chat.say("STOP", wa_id=everyone[2])

    report = await harness.report(campaign_id)
    assert report["counts"]["delivered"] == 12
    assert (report["counts"]["reconfirmed"], report["counts"]["declined"]) == (1, 1)
    assert report["counts"]["opted_out"] == 1
    assert report["guard"]["optout_rate"] == round(1 / 12, 4)
    assert report["status"] == "completed"  # 1 of 12 is below the 50 delivered the guard needs
    rows = await harness.recipients(campaign_id)
    assert rows[everyone[0]] == ("delivered", "reconfirmed", None)
    assert rows[everyone[1]] == ("delivered", "declined", None)
    assert (await harness.chat.ledger(everyone[0]))[-1].policy_version == "2"
    assert await harness.chat.consent(everyone[1]) == {
        **await harness.chat.consent(everyone[1]),
        "marketing": "opted_out",
    }


async def test_a_stop_before_their_turn_means_no_message(embedded: Harness) -> None:
    harness = embedded
    everyone = await harness.seed(8)
    await harness.chat.say("STOP", wa_id=everyone[-1])

    campaign_id = await harness.start(rate=8)
    await harness.until(campaign_id, lambda r: r["counts"]["queued"] >= 1)
    await harness.chat.say("STOP", wa_id=everyone[-2])
    report = await harness.finished(campaign_id)

    assert set(harness.messaged()) == set(everyone[:-2])
    # The first STOP came before the audience was read: not a recipient at all.
    assert report["counts"]["recipients"] == 7
    assert report["counts"]["skipped"] == 1
    assert report["skipped_reasons"] == {"opted_out": 1}
    rows = await harness.recipients(campaign_id)
    assert rows[everyone[-2]] == ("skipped", None, "opted_out")


async def test_the_deadline_lapses_the_silent_ones_per_the_campaign(embedded: Harness) -> None:
    harness = embedded
    lapsing = await harness.seed(3)
    keeping = await harness.seed(2, start=10, categories=("reminders",))
    deadline = datetime.now(UTC) + timedelta(days=3)
    lapse_id = await harness.start(deadline=deadline.isoformat())
    keep_id = await harness.start(
        deadline=deadline.isoformat(),
        on_deadline="keep",
        audience={"categories": ["reminders"]},
    )
    await harness.finished(lapse_id)
    await harness.finished(keep_id)
    await harness.chat.template_button(ids.RECONSENT_YES, "Yes", wa_id=lapsing[0])

    await harness.chat.fire_timers(timedelta(days=3, seconds=1))

    lapsed = await harness.report(lapse_id)
    kept = await harness.report(keep_id)
    assert (lapsed["counts"]["reconfirmed"], lapsed["counts"]["lapsed"]) == (1, 2)
    assert kept["counts"]["lapsed"] == 0
    assert (await harness.chat.consent(lapsing[1]))["marketing"] == "lapsed"
    assert (await harness.chat.consent(keeping[0]))["reminders"] == "opted_in"
    assert await harness.chat.state(keeping[0]) == "idle"


async def test_a_listed_audience_is_exactly_the_known_contacts_listed(embedded: Harness) -> None:
    harness = embedded
    await harness.seed(6)
    listed = [wa_id_of(1), "+" + wa_id_of(3), f"{wa_id_of(5)[:4]} {wa_id_of(5)[4:]}"]
    campaign = await harness.create(
        audience={"categories": ["marketing"], "contacts": [*listed, "15559999999"]}
    )
    assert campaign["listed"] == {"recipients": 3, "unknown": ["15559999999"]}
    assert campaign["counts"]["recipients"] == 3

    status, _ = await harness.api("POST", f"/v1/campaigns/{campaign['id']}/start")
    assert status == 200
    await harness.finished(campaign["id"])

    assert set(harness.messaged()) == {wa_id_of(1), wa_id_of(3), wa_id_of(5)}
