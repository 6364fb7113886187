"""A campaign's template goes out in each recipient's language when the business listed it.

Bug pinned: a re-consent template went to a Spanish customer as `reconsent_request (en)`.
"""

from __future__ import annotations

from tests.bot.campaigns.conftest import HarnessOpener


async def test_each_recipient_gets_the_template_in_their_listed_language(
    open_embedded_harness: HarnessOpener,
) -> None:
    harness = await open_embedded_harness(template_languages=(("es", "es_MX"), ("pt", "pt_BR")))
    spanish, english, unlisted = await harness.seed(3)
    contacts = harness.chat.services.contacts
    await contacts.set_locale(await harness.chat.contact(spanish), "es")
    await contacts.set_locale(await harness.chat.contact(unlisted), "tr")

    campaign_id = await harness.start()
    await harness.finished(campaign_id)

    languages = {str(b["to"]): b["template"]["language"]["code"] for b in harness.templates()}
    assert languages == {spanish: "es_MX", english: "en_US", unlisted: "en_US"}
