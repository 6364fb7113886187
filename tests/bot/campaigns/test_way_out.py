"""Campaigns and live `/v1/messages` against the account's template list (the fake Cloud API's):
a marketing template without a way out is refused at create, start and resume, by the API and
the command line."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import redis_keys
from bot.cli import main
from bot.db.migrate import migrate
from tests.bot.campaigns.conftest import Harness, HarnessOpener
from tests.fakes.graph import template_entry

WABA = "102290129340398"


async def _forget_list(harness: Harness) -> None:
    """What ten minutes do to the cached list."""
    await harness.chat.services.redis.delete(redis_keys.TEMPLATE_LIST.format(waba_id=WABA))


async def test_live_templates_are_checked_against_the_accounts_list_read_once(
    open_embedded_harness: HarnessOpener,
) -> None:
    harness = await open_embedded_harness(business_account_id=WABA)
    (contact,) = await harness.seed(1)
    send = {"to": contact, "category": "marketing"}

    for _ in range(5):
        status, data = await harness.api(
            "POST",
            "/v1/messages",
            {**send, "template": {"name": "spring_sale", "language": "en_US"}},
        )
        assert status == 202, data
    status, data = await harness.api(
        "POST",
        "/v1/messages",
        {**send, "template": {"name": "flash_sale_no_opt_out", "language": "en_US"}},
    )
    assert (status, data["error"]) == (422, "template_without_opt_out"), data
    status, data = await harness.api(
        "POST", "/v1/messages", {**send, "template": {"name": "no_such", "language": "en_US"}}
    )
    assert (status, data["error"]) == (422, "unknown_template"), data
    assert len(harness.graph.template_requests) == 1
    assert f"/{WABA}/message_templates" in harness.graph.template_requests[0].path

    # Meta unreadable and nothing cached: a template that cannot be checked does not go.
    await _forget_list(harness)
    harness.graph.fail_template_lists(1, status=500)
    status, data = await harness.api(
        "POST",
        "/v1/messages",
        {**send, "template": {"name": "spring_sale", "language": "en_US"}},
    )
    assert (status, data["error"]) == (503, "templates_unavailable"), data


async def test_a_campaign_without_a_way_out_is_refused_at_create_and_start(
    open_embedded_harness: HarnessOpener,
) -> None:
    harness = await open_embedded_harness(business_account_id=WABA)
    await harness.seed(2)

    status, data = await harness.api(
        "POST",
        "/v1/campaigns",
        harness.body(template={"name": "flash_sale_no_opt_out", "language": "en_US"}),
    )
    assert (status, data["error"]) == (422, "template_without_opt_out"), data
    assert "flash_sale_no_opt_out" in data["detail"]
    status, data = await harness.api(
        "POST", "/v1/campaigns", harness.body(template={"name": "gone", "language": "en_US"})
    )
    assert (status, data["error"]) == (422, "unknown_template"), data

    campaign = await harness.create()  # reconsent_v2: a STOP footer
    # The template is edited at Meta (its footer dropped) before the campaign starts.
    harness.graph.templates[2] = template_entry("reconsent_v2", "en_US", "MARKETING")
    await _forget_list(harness)
    status, data = await harness.api("POST", f"/v1/campaigns/{campaign['id']}/start")
    assert (status, data["error"]) == (422, "template_without_opt_out"), data
    assert (await harness.report(campaign["id"]))["status"] == "draft"
    assert harness.templates() == []


async def test_every_language_a_recipient_may_get_needs_a_way_out(
    open_embedded_harness: HarnessOpener,
) -> None:
    harness = await open_embedded_harness(
        business_account_id=WABA, template_languages=(("es", "es_MX"),)
    )
    harness.graph.templates.append(template_entry("reconsent_v2", "es_MX", "MARKETING"))
    status, data = await harness.api("POST", "/v1/campaigns", harness.body())
    assert (status, data["error"]) == (422, "template_without_opt_out"), data
    assert "es_MX" in data["detail"]


async def test_a_listed_language_the_template_lacks_falls_back_with_its_reason(
    open_embedded_harness: HarnessOpener, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await open_embedded_harness(
        business_account_id=WABA, template_languages=(("es", "es_MX"),)
    )
    spanish, turkish, unknown = await harness.seed(3)
    contacts = harness.chat.services.contacts
    await contacts.set_locale(await harness.chat.contact(spanish), "es")
    await contacts.set_locale(await harness.chat.contact(turkish), "tr")
    with caplog.at_level(logging.INFO, logger="bot.campaigns.dispatcher"):
        campaign_id = await harness.start()
        await harness.finished(campaign_id)

    languages = {str(b["to"]): b["template"]["language"]["code"] for b in harness.templates()}
    assert languages == {spanish: "en_US", turkish: "en_US", unknown: "en_US"}
    reasons = [
        r.getMessage() for r in caplog.records if "the campaign's language" in r.getMessage()
    ]
    assert len(reasons) == 3, reasons
    assert any("holds no es_MX version of reconsent_v2" in r for r in reasons)
    assert any("lists no template language for tr" in r for r in reasons)
    assert any("(unknown)" in r and "not known" in r for r in reasons)


async def test_without_the_account_id_a_campaign_goes_unchecked_and_counted(
    open_embedded_harness: HarnessOpener,
) -> None:
    harness = await open_embedded_harness()
    await harness.seed(1)
    campaign_id = await harness.start(
        template={"name": "flash_sale_no_opt_out", "language": "en_US"}
    )
    await harness.finished(campaign_id)
    assert harness.graph.template_requests == []
    metrics = harness.chat.services.metrics.render().decode()
    assert 'optin_templates_opt_out_unknown_total{template="flash_sale_no_opt_out"} 2.0' in metrics


async def test_the_command_line_refuses_a_campaign_without_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "memory://cli-way-out")
    monkeypatch.chdir(tmp_path)
    deadline = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    args = ["campaign", "create", "--template", "flash_sale_no_opt_out", "--language", "en"]
    args += ["--categories", "marketing", "--policy-version", "2", "--deadline", deadline]
    assert await asyncio.to_thread(main, args) == 2
    err = capsys.readouterr().err
    assert "template_without_opt_out" in err and "flash_sale_no_opt_out" in err
