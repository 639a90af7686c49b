"""A real headless browser for tests of web pages: the system's Chromium, driven by Selenium.

Chromium and chromedriver are Debian's packages (``chromium``, ``chromium-driver``), which
``make install`` installs when it runs as root. Selenium is given both paths, so its
Selenium Manager never runs and nothing is downloaded. Without them a test that asks for the
browser fails with a message naming ``make install``: it is never skipped.

A test module imports ``browser_fixture``, which provides the ``browser`` fixture (a fresh
browser with a profile of its own for each test), and signs the browser in as an account of
a server with HTTP basic auth: every later request of that browser carries the account, the
form POSTs that its pages make included::

    from selenium.webdriver.common.by import By

    from tests.servers.browser import browser_fixture, sign_in  # noqa: F401 - `browser`

    def test_approve(browser, auth_mlflow_server):
        sign_in(browser, "alice", "alice-password")
        browser.get(f"{auth_mlflow_server.uri}/some/page")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

``sign_in`` again switches the account; ``sign_out`` drops it. For a browser that outlives
one test (a module-scoped fixture of one's own), use the ``headless_chromium`` context
manager, which the fixture wraps.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

# Headless without a display; --no-sandbox because the tests run as root, which Chromium's
# sandbox refuses; /dev/shm is small in containers and Chromium crashes when it fills up.
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1280,1024",
    "--no-first-run",
    "--no-default-browser-check",
)
PAGE_LOAD_SECONDS = 60


def installed() -> tuple[str, str]:
    """The paths of the system's Chromium and chromedriver.

    Returns:
        ``(chromium, chromedriver)``, as found on ``PATH`` (``/usr/bin`` from Debian's
        packages).

    Raises:
        pytest.fail.Exception: One or both are missing; the message names ``make install``.
    """
    found = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: the browser tests need Debian's "
            "chromium and chromium-driver; run `make install` as root (it installs them with "
            "apt-get) or `apt-get install chromium chromium-driver`",
            pytrace=False,
        )
    return found["chromium"], found["chromedriver"]


@contextmanager
def headless_chromium(folder: Path | None = None) -> Iterator[WebDriver]:
    """Start the system's Chromium, headless, under chromedriver; quit it on exit.

    Args:
        folder: Where the browser's profile and chromedriver's log go; a temporary folder,
            removed on exit, when None.

    Yields:
        The Selenium WebDriver of the running browser.

    Raises:
        pytest.fail.Exception: Chromium or chromedriver is missing, or the browser does not
            start (the message holds the end of chromedriver's log).
    """
    chromium, chromedriver = installed()
    with ExitStack() as stack:
        if folder is None:
            # Chromium may still be writing to its profile as it exits: leftovers are harmless.
            temp = tempfile.TemporaryDirectory(
                prefix="wikilm-chromium-", ignore_cleanup_errors=True
            )
            folder = stack.enter_context(temp)
        root = Path(folder)
        profile = root / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = root / "chromedriver.log"
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (*ARGUMENTS, f"--user-data-dir={profile}"):
            options.add_argument(argument)
        # An explicit driver path: Selenium uses it as is and never runs Selenium Manager.
        service = Service(executable_path=chromedriver, log_output=str(log))
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except WebDriverException as error:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(
                f"Chromium ({chromium}) did not start under {chromedriver}: {error.msg}\n{tail}",
                pytrace=False,
            )
        try:
            driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
            yield driver
        finally:
            driver.quit()


@pytest.fixture(name="browser")
def browser_fixture(tmp_path: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium for this test, signed in as nobody."""
    with headless_chromium(tmp_path / "chromium") as driver:
        yield driver


def sign_in(driver: WebDriver, username: str, password: str) -> None:
    """Send HTTP basic auth as ``username`` with every later request of ``driver``.

    The header is set through the Chrome DevTools Protocol, for every request of the
    driver's current tab to any host: page loads, form POSTs, and the page's own fetches,
    with no login dialog involved. Calling it again switches the account.

    Args:
        driver: A Chromium WebDriver (``browser`` or ``headless_chromium``).
        username: The account's name (no ``:``, as basic auth requires).
        password: The account's password.
    """
    if ":" in username:
        raise ValueError(f"a basic-auth username cannot hold ':': {username!r}")
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    _extra_headers(driver, {"Authorization": f"Basic {token}"})


def sign_out(driver: WebDriver) -> None:
    """Stop sending the account that ``sign_in`` set; later requests carry no credentials."""
    _extra_headers(driver, {})


def _extra_headers(driver: WebDriver, headers: dict[str, str]) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
