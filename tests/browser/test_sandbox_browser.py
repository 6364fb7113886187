"""The sandbox chat in a real browser: pick a number and English, type START, tap Yes, see the
consent turn opted in beside the chat; STOP; a double opt-in started from the business panel;
keyboard only; 360 px wide. Screenshots go to docs/screenshots/sandbox-*.png."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.settings import Settings
from tests.fakes.webhooks import APP_SECRET

WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def sandbox_url(live_server: Callable[[Any], str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """`optin-bot serve` in sandbox mode (embedded stack), with webhook signatures checked."""
    database = tmp_path_factory.mktemp("sandbox") / "optin.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        redis_url=f"memory://{uuid.uuid4().hex}",
        app_secret=APP_SECRET,
        business_name="Acme Shoes",
    )
    return live_server(create_app(settings))


def wait(driver: Any, condition: Callable[[Any], Any]) -> Any:
    """Until `condition` holds; an element replaced meanwhile (the live panel) is tried again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        WAIT_SECONDS,
        poll_frequency=0.1,
        ignored_exceptions=(StaleElementReferenceException,),
    ).until(condition)


def by_css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def consent(driver: Any, category: str) -> str:
    """The status the side panel shows (read in one script: the panel is re-rendered live)."""
    return str(
        driver.execute_script(
            "const s = document.querySelector(`tr[data-category='${arguments[0]}'] .sb-status`);"
            "return s ? s.dataset.status : null;",
            category,
        )
    )


def texts(driver: Any, selector: str) -> list[str]:
    """The visible text of every element matching `selector`, read in one script."""
    found = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);", selector
    )
    return [str(t) for t in found]


def bot_said(driver: Any, text: str) -> Any:
    """Wait for a bot bubble containing `text`; return it."""

    def find(d: Any) -> Any:
        for bubble in all_css(d, "li.sb-bot"):
            if text in bubble.text:
                return bubble
        return False

    return wait(driver, find)


def open_chat(driver: Any, base_url: str, *, number: str | None = None) -> str:
    """From `/`: keep (or type) the number, choose English, start; return the number."""
    from selenium.webdriver.support.ui import Select

    driver.get(base_url + "/")
    wait(driver, lambda d: d.current_url.endswith("/sandbox"))
    field = by_css(driver, "#wa_id")
    if number is not None:
        field.clear()
        field.send_keys(number)
    chosen = str(field.get_attribute("value"))
    Select(by_css(driver, "#locale")).select_by_value("en")
    by_css(driver, "#start-chat").click()
    wait(driver, lambda d: "/sandbox/chat" in d.current_url)
    return chosen


def type_message(driver: Any, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    field = by_css(driver, "#compose-text")
    field.send_keys(text)
    field.send_keys(Keys.ENTER)


def test_a_whole_double_optin_by_clicking_then_stop(
    chromium: Any, sandbox_url: str, screenshot: Callable[[str], Path]
) -> None:
    driver = chromium
    driver.get(sandbox_url + "/")
    wait(driver, lambda d: d.current_url.endswith("/sandbox"))
    offered = str(by_css(driver, "#wa_id").get_attribute("value"))
    assert offered.isdigit() and len(offered) == 11
    screenshot("sandbox-start")

    open_chat(driver, sandbox_url)
    assert all(consent(driver, c) == "none" for c in ("marketing", "order_updates"))
    type_message(driver, "START")
    bot_said(driver, "Acme Shoes would like to send you")
    yes = wait(driver, lambda d: d.find_element("css selector", 'button[data-id="optin:yes"]'))
    assert yes.text == "Yes"
    assert consent(driver, "marketing") == "pending"
    yes.click()
    bot_said(driver, "Thank you. Acme Shoes will send you")
    wait(driver, lambda d: consent(d, "marketing") == "opted_in")
    assert texts(driver, "#conversation-state") == ["idle"]
    assert "granted" in texts(driver, "#ledger-rows")[0]
    # What the customer typed is shown as text, never run as markup.
    type_message(driver, "<b>bold?</b>")
    wait(driver, lambda d: any("<b>bold?</b>" in t for t in texts(d, "li.sb-customer[data-id]")))
    assert all_css(driver, "#messages b") == []
    screenshot("sandbox-chat")

    type_message(driver, "STOP")
    bot_said(driver, "You are unsubscribed: Acme Shoes will not send you any more messages")
    wait(driver, lambda d: consent(d, "marketing") == "opted_out")
    assert consent(driver, "order_updates") == "opted_out"


def test_the_business_panel_starts_a_double_optin(chromium: Any, sandbox_url: str) -> None:
    driver = chromium
    open_chat(driver, sandbox_url, number="12125550177")
    # Before the customer wrote, the window is closed: the API's refusal is shown.
    by_css(driver, "#start-optin").click()
    wait(driver, lambda d: "OPTIN_TEMPLATE" in by_css(d, "#business-status").text)
    type_message(driver, "hello")
    wait(driver, lambda d: "open until" in texts(d, "#window-state")[0])
    by_css(driver, "#start-optin").click()
    wait(driver, lambda d: "Double opt-in requested" in by_css(d, "#business-status").text)
    prompt = bot_said(driver, "would like to send you promotions")
    prompt.find_element("css selector", 'button[data-id="optin:yes"]').click()
    wait(driver, lambda d: consent(d, "marketing") == "opted_in")
    assert consent(driver, "order_updates") == "none"
    # A re-consent campaign: the template arrives with its quick replies; Yes reconfirms.
    policy = by_css(driver, "#policy_version")
    policy.clear()
    policy.send_keys("7")
    by_css(driver, "#start-reconsent").click()
    wait(driver, lambda d: "Re-consent campaign started" in by_css(d, "#business-status").text)
    template = bot_said(driver, "Template reconsent_request")
    template.find_element("css selector", 'button[data-id="reconsent:yes"]').click()
    wait(driver, lambda d: "reconfirmed" in texts(d, "#ledger-rows")[0])
    assert consent(driver, "marketing") == "opted_in"


def test_keyboard_alone_reaches_and_uses_the_chat(chromium: Any, sandbox_url: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver = chromium
    open_chat(driver, sandbox_url, number="13055550123")
    type_message(driver, "PREFERENCES")
    bot_said(driver, "Choose which messages you want to receive")
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")

    def tab_to(predicate: Callable[[Any], bool], limit: int = 60) -> Any:
        for _ in range(limit):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            active = driver.switch_to.active_element
            if predicate(active):
                return active
        raise AssertionError("not reachable with Tab")

    summary = tab_to(lambda e: e.tag_name == "summary")
    summary.send_keys(Keys.ENTER)
    row = tab_to(lambda e: e.get_attribute("data-id") == "pref:marketing")
    row.send_keys(Keys.ENTER)
    bot_said(driver, "Updated: Acme Shoes will send you promotions")
    wait(driver, lambda d: consent(d, "marketing") == "opted_in")
    field = tab_to(lambda e: e.get_attribute("id") == "compose-text")
    field.send_keys("HELP", Keys.ENTER)
    bot_said(driver, "This is Acme Shoes on WhatsApp.")
    tab_to(lambda e: e.get_attribute("id") == "send")
    tab_to(lambda e: e.get_attribute("id") == "start-optin")


def test_the_chat_fits_a_360_pixel_phone(
    chromium: Any,
    sandbox_url: str,
    screenshot: Callable[[str], Path],
    phone_width: Callable[..., None],
) -> None:
    driver = chromium
    phone_width(360)
    open_chat(driver, sandbox_url, number="14155550161")
    type_message(driver, "START")
    bot_said(driver, "would like to send you")
    assert driver.execute_script("return window.innerWidth") == 360
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow == 0, f"the page scrolls sideways by {overflow} px at 360 px"
    phone = by_css(driver, ".sb-phone")
    assert phone.size["width"] <= 360
    yes = by_css(driver, 'button[data-id="optin:yes"]')
    assert yes.is_displayed() and yes.size["height"] >= 32
    screenshot("sandbox-mobile")
