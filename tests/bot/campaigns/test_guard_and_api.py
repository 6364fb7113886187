"""The quality guard pauses a campaign and says why; the API refuses what cannot run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.bot.campaigns.conftest import Harness


async def test_the_optout_rate_pauses_the_campaign_with_the_reason(embedded: Harness) -> None:
    harness = embedded
    everyone = await harness.seed(80)
    campaign_id = await harness.start(daily_cap=60)  # capped, so still running afterwards
    await harness.until(campaign_id, lambda r: r["phase"] == "capped" and r["counts"]["sent"] == 60)
    await harness.chat.wait_idle()
    await harness.report_statuses("delivered")
    messaged = sorted(harness.messaged())

    await harness.chat.say("STOP", wa_id=messaged[0])
    assert (await harness.report(campaign_id))["status"] == "running"  # 1 of 60: 1.7 %
    await harness.chat.say("STOP", wa_id=messaged[1])

    report = await harness.report(campaign_id)
    assert report["status"] == "paused"
    assert report["paused_by"] == "guard"
    assert "opt-out rate 3.3% (2 of 60 delivered)" in report["pause_reason"]
    assert report["guard"]["opted_out"] == 2
    assert len(everyone) == 80 and report["counts"]["pending"] == 20

    status, _ = await harness.api("POST", f"/v1/campaigns/{campaign_id}/resume")
    assert status == 200
    assert (await harness.report(campaign_id))["status"] == "running"


async def test_quality_notices_pause_running_campaigns(embedded: Harness) -> None:
    harness = embedded
    await harness.seed(10)
    first = await harness.start(daily_cap=1)
    other = await harness.start(daily_cap=1, template={"name": "other_template"})
    for campaign_id in (first, other):
        await harness.until(campaign_id, lambda r: r["phase"] == "capped")

    await harness.notify(
        "message_template_quality_update",
        {
            "previous_quality_score": "GREEN",
            "new_quality_score": "RED",
            "message_template_id": 1,
            "message_template_name": "reconsent_v2",
            "message_template_language": "en_US",
        },
    )
    await harness.chat.wait_idle()
    paused = await harness.report(first)
    assert paused["status"] == "paused"
    assert paused["pause_reason"] == (
        "Meta lowered template reconsent_v2's quality from GREEN to RED (en_US)"
    )
    assert (await harness.report(other))["status"] == "running"

    await harness.notify(
        "phone_number_quality_update",
        {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_1K"},
    )
    await harness.chat.wait_idle()
    flagged = await harness.report(other)
    assert flagged["status"] == "paused"
    assert flagged["pause_reason"] == (
        "Meta reported the number's quality: FLAGGED (messaging limit now TIER_1K)"
    )


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"surprise": 1}, "surprise: unknown field"),
        ({"template": {"buttons": ["yes please"]}}, "template.buttons"),
        ({"audience": {"categories": ["gossip"]}}, "unknown category 'gossip'"),
        ({"audience": {"policy_below": "two"}}, "audience.policy_below"),
        ({"rate": 1001}, "rate"),
        ({"daily_cap": 0}, "daily_cap"),
        ({"on_deadline": "forget"}, "on_deadline"),
        ({"deadline": "2020-01-01T00:00:00+00:00"}, "deadline: must be in the future"),
        ({"deadline": "2030-01-01T00:00:00"}, "deadline: needs a time zone"),
        ({"audience": {"contacts": ["not a number"]}}, "audience.contacts[0]"),
        ({"audience": {"contacts": ["15559999999"]}}, "none of the 1 contacts is known"),
    ],
)
async def test_a_campaign_that_cannot_run_is_refused_naming_the_field(
    embedded: Harness, change: dict[str, object], detail: str
) -> None:
    status, body = await embedded.api("POST", "/v1/campaigns", embedded.body(**change))
    assert status == 422
    assert body["error"] == "invalid_campaign"
    assert detail in body["detail"]


async def test_transitions_and_unknown_campaigns(embedded: Harness) -> None:
    harness = embedded
    campaign = await harness.create(deadline=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    path = f"/v1/campaigns/{campaign['id']}"
    assert campaign["status"] == "draft"
    assert (await harness.api("POST", f"{path}/resume"))[0] == 409
    assert (await harness.api("POST", f"{path}/pause"))[0] == 409
    assert (await harness.api("POST", f"{path}/start"))[0] == 200
    assert (await harness.api("POST", f"{path}/start"))[0] == 409
    status, body = await harness.api("POST", f"{path}/pause", {"reason": "legal review"})
    assert status == 200
    assert (body["status"], body["paused_by"], body["pause_reason"]) == (
        "paused",
        "operator",
        "legal review",
    )
    assert (await harness.api("GET", "/v1/campaigns/999"))[0] == 404
    assert (await harness.api("POST", "/v1/campaigns/999/start"))[0] == 404
    listed = (await harness.api("GET", "/v1/campaigns"))[1]["campaigns"]
    assert [c["id"] for c in listed] == [campaign["id"]]
