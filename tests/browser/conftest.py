"""Browser tests: Debian's headless Chromium, driven by Selenium through ChromeDriver, against
the app served on loopback from a background thread.

Selenium's calls block, so the tests themselves are plain functions, and the app runs on its own
event loop in a thread (`live_server`). Without Chromium the tests skip, naming what is missing,
unless `REQUIRE_SERVICES=1` (CI installs it in `.ci/run`), when they fail instead.
Screenshots of the main pages are written to `docs/screenshots/` for the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The pictures carry random numbers and times, so an ordinary run writes them to a scratch
# folder (a clean checkout stays clean); UPDATE_SCREENSHOTS=1 refreshes the ones in docs/.
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "optin-bot-screenshots"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


class LiveServer:
    """An aiohttp app served on 127.0.0.1 (a free port) by an event loop in its own thread."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self.url

    async def _start(self) -> str:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def live_server() -> Iterator[Callable[[web.Application], str]]:
    """`live_server(app)` serves `app` for the module's tests and returns its base URL."""
    servers: list[LiveServer] = []

    def start(app: web.Application) -> str:
        server = LiveServer(app)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@contextlib.contextmanager
def headless_chromium(prefix: str = "optin-chromium-") -> Iterator[Any]:
    """A fresh headless Chromium (own profile), 1280x900, closed afterwards; the test fails
    (REQUIRE_SERVICES=1) or skips when Chromium or its driver is missing."""
    missing = _missing()
    if missing is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"browser tests need Chromium: {missing} (REQUIRE_SERVICES=1)")
        pytest.skip(f"browser tests need Chromium: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix=prefix)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A fresh headless Chromium for one test."""
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def screenshot(chromium: Any) -> Callable[[str], Path]:
    """`screenshot("sandbox-chat")` saves the viewport as sandbox-chat.png in `SCREENSHOTS`."""

    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        assert chromium.save_screenshot(str(path)), f"no screenshot written to {path}"
        return path

    return save


@pytest.fixture
def phone_width(chromium: Any) -> Callable[..., None]:
    """`phone_width(360)` lays the page out as a phone that many CSS pixels wide."""

    def emulate(width: int, height: int = 780) -> None:
        chromium.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
        )

    return emulate
