"""The agents' console in a real browser: log in, find a contact, read a timeline with a STOP
and its confirmation, reveal a number, withdraw a category as an agent, a form without its CSRF
token refused, customer text shown and never run, keyboard reach, 360 px, campaigns and flows.
Screenshots go to console-*.png in `SCREENSHOTS` (docs/screenshots with UPDATE_SCREENSHOTS=1).

One headless Chromium serves the whole module (the tests run in order, as one agent's session);
the app runs on loopback in sandbox mode with API_TOKEN and an agent token set.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.migrate import migrate
from bot.settings import Settings
from tests.bot.console.support import ADMIN_TOKEN, ALICE_TOKEN, seed_campaign
from tests.browser.conftest import SCREENSHOTS, headless_chromium
from tests.fakes.webhooks import APP_SECRET, dumps, signed, text_webhook

WAIT_SECONDS = 20
STOPPER = "34612345678"  # Ana, who says STOP
ASKER = "34698765432"  # Bruno, who asks an agent by phone to stop offers
OTHERS = {"447700900123": "Chen Wei", "12125550164": "Dana Levi", "34655512034": "Anabel Ruiz"}
ARABIC = "966501234567"  # Sara, who writes in Arabic
ARABIC_TEXT = "مرحبا، أين طلبي؟"
OWNED = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'


class Site:
    """The console's base URL and database, and the customers' side (signed webhooks)."""

    def __init__(self, url: str, database_url: str) -> None:
        self.url = url
        self.database_url = database_url

    def say(self, wa_id: str, text: str, name: str) -> None:
        body = dumps(text_webhook(wa_id=wa_id, text=text, name=name))
        request = urllib.request.Request(
            self.url + "/webhook", data=body, headers=signed(body), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


async def _known_contacts(database_url: str) -> None:
    """The customers in a fixed order (so the pages and screenshots are the same every run)."""
    engine = create_engine(database_url)
    try:
        contacts = ContactRepository(session_factory(engine))
        people = {STOPPER: "Ana García", ASKER: "Bruno Costa", **OTHERS, ARABIC: "سارة"}
        for wa_id, name in people.items():
            await contacts.resolve(wa_id=wa_id, user_id=None, profile_name=name)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def site(live_server: Callable[[Any], str], tmp_path_factory: pytest.TempPathFactory) -> Site:
    database = tmp_path_factory.mktemp("console") / "optin.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    asyncio.run(migrate(database_url))
    asyncio.run(_known_contacts(database_url))
    settings = Settings(
        database_url=database_url,
        redis_url=f"memory://{uuid.uuid4().hex}",
        app_secret=APP_SECRET,
        business_name="Acme Shoes",
        api_token=ADMIN_TOKEN,
        agent_tokens=(("alice", ALICE_TOKEN),),
    )
    site = Site(live_server(create_app(settings)), database_url)
    site.say(STOPPER, "Hi! Where is my order #1042?", "Ana García")
    site.say(STOPPER, OWNED, "Ana García")
    site.say(STOPPER, "STOP", "Ana García")
    site.say(ASKER, "Hello, can I change my delivery address?", "Bruno Costa")
    for wa_id, name in OTHERS.items():
        site.say(wa_id, "Hello", name)
    site.say(ARABIC, ARABIC_TEXT, "سارة")
    return site


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (the tests run in order, as one agent's session)."""
    with headless_chromium("optin-console-chromium-") as driver:
        yield driver


def wait(driver: Any, condition: Callable[[Any], Any]) -> Any:
    """Poll `condition`; an element that vanished because the page was being replaced (a form
    just posted) counts as "not yet", not as a failure."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        WAIT_SECONDS,
        poll_frequency=0.1,
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    ).until(condition)


def css(driver: Any, selector: str) -> Any:
    return driver.find_element("css selector", selector)


def texts(driver: Any, selector: str) -> list[str]:
    found = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);", selector
    )
    return [str(t) for t in found]


def until_shown(driver: Any, url: str, text: str) -> None:
    """Reload `url` until the page shows `text` (the workers are still busy)."""

    def shown(d: Any) -> bool:
        d.get(url)
        return text in d.find_element("tag name", "body").text

    wait(driver, shown)


def snapshot(driver: Any, name: str, *, max_height: int = 2200) -> Path:
    """The page (up to `max_height` CSS pixels of it) as <name>.png in `SCREENSHOTS`."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width = driver.execute_script("return document.documentElement.clientWidth")
    clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def contact_url(driver: Any, site: Site, query: str) -> str:
    driver.get(f"{site.url}/console?q={query}")
    link = css(driver, "table.c-results td a")
    return str(link.get_attribute("href"))


def test_the_console_needs_a_login(browser: Any, site: Site) -> None:
    browser.get(site.url + "/console")
    wait(browser, lambda d: "/console/login" in d.current_url)
    snapshot(browser, "console-login")
    css(browser, "#token").send_keys("not the token")
    css(browser, "#token").submit()
    wait(browser, lambda d: "That token is not valid." in d.page_source)
    css(browser, "#token").send_keys(ALICE_TOKEN)
    css(browser, "#token").submit()
    wait(browser, lambda d: d.current_url.rstrip("/").endswith("/console"))
    assert "Agent alice" in css(browser, ".c-agent").text
    cookie = browser.get_cookie("optin_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert browser.execute_script("return document.cookie") == ""


def test_find_a_contact_and_read_the_stop_and_its_confirmation(browser: Any, site: Site) -> None:
    until_shown(browser, f"{site.url}/console", "Anabel Ruiz")
    search = css(browser, "#q")
    search.send_keys("ana")
    search.submit()
    wait(browser, lambda d: "q=ana" in d.current_url)
    assert texts(browser, "table.c-results td[data-label='Name']") == ["Anabel Ruiz", "Ana García"]
    snapshot(browser, "console-search")

    browser.find_element("link text", "Ana García").click()
    wait(browser, lambda d: "/console/contacts/" in d.current_url)
    until_shown(browser, browser.current_url, "You are unsubscribed")
    # Newest first, one card for the STOP's four categories, in plain words.
    titles = texts(browser, ".c-timeline .c-title")
    assert titles[:3] == [
        "We sent (text)",
        "opted out: promotions, order updates, reminders, account alerts",
        "Customer wrote (text)",
    ]
    assert len(titles) == 5, titles
    steps = texts(browser, ".c-timeline .c-step")
    assert steps[0] == "Conversation: One step, nothing pending → nothing pending"
    said = texts(browser, ".c-timeline .c-text")
    assert said[1:] == ["STOP", OWNED, "Hi! Where is my order #1042?"]
    assert "You are unsubscribed: Acme Shoes will not send you" in said[0]
    assert texts(browser, "#consent-marketing .c-badge") == ["opted out"]
    assert css(browser, "#consent-marketing .c-badge").get_attribute("title") == "opted_out"
    assert texts(browser, "#consent-marketing th") == ["promotions"]
    # The <script> and the onerror handler are shown as text, never run.
    assert browser.execute_script("return window.__owned") is None
    assert browser.find_elements("css selector", ".c-timeline script, .c-timeline img") == []
    assert css(browser, "#number").text == "+34 6•• •• •• 78"
    snapshot(browser, "console-contact")


def test_reveal_the_number_for_one_view(browser: Any, site: Site) -> None:
    browser.get(contact_url(browser, site, STOPPER))
    css(browser, "#reveal").click()
    wait(browser, lambda d: css(d, "#number").text == "+34612345678")
    assert "alice reveal number" in css(browser, ".c-audit").text
    browser.get(contact_url(browser, site, STOPPER))
    assert css(browser, "#number").text == "+34 6•• •• •• 78"


def test_withdraw_a_category_as_an_agent(browser: Any, site: Site) -> None:
    from selenium.webdriver.support.ui import Select

    page = contact_url(browser, site, ASKER)
    browser.get(page)
    Select(css(browser, "#withdraw-category")).select_by_value("marketing")
    css(browser, "#withdraw-note").send_keys("Bruno phoned: no more offers, please")
    css(browser, "#withdraw").click()
    wait(browser, lambda d: "done=withdrawn" in d.current_url)
    assert "The ledger row names you and your note." in css(browser, ".c-notice").text
    assert texts(browser, "#consent-marketing .c-badge") == ["opted out"]
    assert texts(browser, "#consent-order_updates .c-badge") == ["never asked"]
    consent = browser.execute_script(
        "return [...document.querySelectorAll('.c-consent details, .c-item.c-consent')]"
        ".map(e => e.innerText).join(' ');"
    )
    consent = " ".join(consent.split())
    assert "opted out: promotions" in consent
    assert "by agent" in consent and "alice" in consent
    assert "Bruno phoned: no more offers, please" in consent


def test_a_form_without_its_csrf_token_is_refused(browser: Any, site: Site) -> None:
    page = contact_url(browser, site, ASKER)
    browser.get(page)
    browser.execute_script(
        "const form = document.querySelector('#withdraw-form');"
        "form.querySelector('input[name=csrf]').remove();"
        "form.querySelector('#withdraw-category').value = 'reminders';"
        "form.querySelector('#withdraw-note').value = 'forged';"
        "form.submit();"
    )
    wait(browser, lambda d: "Refused" in d.find_element("tag name", "h1").text)
    assert "no valid CSRF token" in browser.page_source
    browser.get(page)
    assert texts(browser, "#consent-reminders .c-badge") == ["never asked"]


def test_the_keyboard_reaches_the_main_actions(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.get(contact_url(browser, site, ASKER))
    body = css(browser, "body")
    body.click()
    reached: list[str] = []
    for _ in range(60):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        element = browser.switch_to.active_element
        reached.append(
            str(element.get_attribute("id") or element.get_attribute("href") or element.tag_name)
        )
    for wanted in ("reveal", "withdraw-category", "withdraw-note", "withdraw", "request-optin"):
        assert wanted in reached, (wanted, reached)
    assert any(r.endswith("/transcript.txt") for r in reached), reached
    assert reached.index("withdraw-category") < reached.index("withdraw")
    focus = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle;")
    assert focus != "none"


def test_the_contact_page_at_360_px(browser: Any, site: Site) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        browser.get(contact_url(browser, site, STOPPER))
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0
        assert css(browser, "#withdraw").is_displayed()
        snapshot(browser, "console-contact-360", max_height=1600)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_campaigns_and_flows(browser: Any, site: Site) -> None:
    async def seed() -> int:
        engine = create_engine(site.database_url)
        try:
            return await seed_campaign(engine)
        finally:
            await engine.dispose()

    campaign_id = asyncio.run(seed())
    browser.get(site.url + "/console/campaigns")
    assert "Policy 2 re-consent" in css(browser, "table.c-results").text
    snapshot(browser, "console-campaigns")
    browser.find_element("link text", "Policy 2 re-consent").click()
    wait(browser, lambda d: d.current_url.endswith(f"/console/campaigns/{campaign_id}"))
    assert "Tripped" in css(browser, "#guard-state").text
    assert len(browser.find_elements("css selector", "svg.c-chart polyline")) == 2
    snapshot(browser, "console-campaign")

    browser.get(site.url + "/console/flows")
    wait(browser, lambda d: d.execute_script("return document.documentElement.dataset.diagram"))
    assert browser.execute_script("return document.documentElement.dataset.diagram") == "drawn"
    labels = json.dumps(texts(browser, "#flow-diagram-1"))
    assert "waiting for YES to the opt-in" in labels and "nothing pending" in labels
    assert "YES: grant" in css(browser, ".c-legend").text
    assert len(browser.find_elements("css selector", ".c-diagram pre.mermaid svg")) == 4
    # Regression: the diagrams' edge labels overlapped; no two may intersect now.
    overlaps = browser.execute_script(
        """
        const found = [];
        for (const svg of document.querySelectorAll('.c-diagram svg')) {
          const shown = [...svg.querySelectorAll('g.edgeLabel')]
            .filter(e => {
              const r = e.getBoundingClientRect();
              return r.width > 0 && r.height > 0 && e.textContent.trim() !== '';
            });
          const boxes = shown.map(e => e.getBoundingClientRect());
          const labels = shown.map(e => e.textContent.trim());
          for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i], b = boxes[j];
            if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
                && b.top < a.bottom - 1) {
              found.push(`${svg.parentElement.id}: ${labels[i]} | ${labels[j]}`);
            }
          }
        }
        return found;
        """
    )
    assert overlaps == [], overlaps
    snapshot(browser, "console-flows", max_height=2600)


def test_arabic_text_reads_right_to_left_and_numbers_keep_their_country_code(
    browser: Any, site: Site
) -> None:
    """Regression: Arabic bubbles laid out left to right (no `dir`), and a US number was masked
    as +12 1•• ••• •64 (the first two digits taken for the country code)."""
    browser.get(f"{site.url}/console?q=1212")
    assert texts(browser, "table.c-results td[data-label='Number']") == ["+1 2••-•••-••64"]
    browser.get(contact_url(browser, site, ARABIC))
    until_shown(browser, browser.current_url, ARABIC_TEXT)
    bubble = css(browser, ".c-timeline .c-text")
    assert bubble.get_attribute("dir") == "auto"
    assert browser.execute_script("return getComputedStyle(arguments[0]).direction", bubble) == (
        "rtl"
    )
    heading = css(browser, "h1")
    assert browser.execute_script("return getComputedStyle(arguments[0]).direction", heading) == (
        "rtl"
    )
    snapshot(browser, "console-contact-arabic", max_height=1400)


def test_the_contact_list_shows_consent_and_the_opt_outs_page_counts_it(
    browser: Any, site: Site
) -> None:
    browser.get(f"{site.url}/console?q=ana")
    ana = browser.execute_script(
        "return [...document.querySelectorAll('table.c-results tr')]"
        ".find(r => r.innerText.includes('Ana García')).querySelector("
        "'td[data-label=Consent]').innerText;"
    )
    assert "opted out" in ana and "promotions" in ana
    from selenium.webdriver.support.ui import Select

    css(browser, "#q").clear()
    Select(css(browser, "#consent")).select_by_value("opted_out")
    css(browser, "#q").submit()
    wait(browser, lambda d: "consent=opted_out" in d.current_url)
    names = texts(browser, "table.c-results td[data-label='Name']")
    assert set(names) == {"Ana García", "Bruno Costa"}, names
    snapshot(browser, "console-search")

    browser.find_element("link text", "Opt-outs").click()
    wait(browser, lambda d: "/console/opt-outs" in d.current_url)
    totals = css(browser, "#optout-totals").text
    assert totals.startswith("5 opt-outs and 0 opt-ins"), totals
    assert len(browser.find_elements("css selector", "svg.c-chart rect[fill='#cf222e']")) >= 4
    methods = css(browser, "section[aria-label='By method'] table").text
    assert "keyword 4 0" in methods and "agent 1 0" in methods
    snapshot(browser, "console-optouts", max_height=2400)
    browser.find_element("link text", "Bruno Costa").click()
    wait(browser, lambda d: "Bruno Costa" in css(d, "h1").text)
