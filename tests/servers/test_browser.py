"""The headless browser of tests/servers/browser.py against a real server with basic auth.

The server is a small ``http.server`` in a thread that records every request it answers
(method, path, signed-in account, body): a page with a POST form, the form's target, and
the page the target redirects to.
"""

from __future__ import annotations

import base64
import binascii
import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.support.ui import WebDriverWait

from tests.servers.browser import (  # noqa: F401 - browser_fixture provides `browser`
    browser_fixture,
    headless_chromium,
    sign_in,
    sign_out,
)

pytestmark = pytest.mark.browser

ACCOUNTS = {"alice": "alice-password", "bob": "bob-password"}
FORM = """<!doctype html><title>review</title>
<form method="post" action="/approve">
  <input type="hidden" name="version" value="3">
  <button type="submit" id="approve">Approve</button>
</form>"""


@dataclass(frozen=True)
class Seen:
    """One request the server answered."""

    method: str
    path: str
    user: str | None  # the account its basic auth named, None when it named none or wrongly
    status: int
    body: str = ""


@dataclass
class ReviewServer:
    """The running server: its base URL and what it has answered so far."""

    url: str
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/favicon.ico":
            # Chromium asks for it on its own, at moments of its choosing: not the test's request.
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        user = self._user()
        if user is None:
            self._refuse("GET")
        elif self.path == "/":
            self._answer("GET", user, HTTPStatus.OK, FORM)
        elif self.path == "/approved":
            page = f'<p id="result">approved by {html.escape(user)}</p>'
            self._answer("GET", user, HTTPStatus.OK, page)
        else:
            self._answer("GET", user, HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        user = self._user()
        if user is None:
            self._refuse("POST", body)
            return
        # As a web app does after a POST: redirect, so a reload does not post again.
        self.server.seen.append(Seen("POST", self.path, user, HTTPStatus.SEE_OTHER, body))
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/approved")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _user(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        try:
            user, _, password = base64.b64decode(token).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if ACCOUNTS.get(user) == password else None

    def _refuse(self, method: str, body: str = "") -> None:
        self._answer(
            method,
            None,
            HTTPStatus.UNAUTHORIZED,
            "<h1>401 Unauthorized</h1>",
            # What MLflow's basic-auth app sends, which makes a browser ask for credentials.
            {"WWW-Authenticate": 'Basic realm="wikilm-test"'},
            body,
        )

    def _answer(
        self,
        method: str,
        user: str | None,
        status: HTTPStatus,
        page: str,
        headers: dict[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.server.seen.append(Seen(method, self.path, user, status, body))
        content = page.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "text/html; charset=utf-8", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Keep the test's output quiet: ``seen`` holds what was asked."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[Seen]


@pytest.fixture
def review_server() -> Iterator[ReviewServer]:
    """The server on a free local port, in a thread, for this test."""
    httpd = _Server(("127.0.0.1", 0), _Handler)  # port 0: the system picks a free one
    made = ReviewServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.seen = made.seen
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield made
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _no_selenium_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selenium Manager would download a driver: the browser must start without it."""

    def refuse(*_: object) -> dict:
        raise AssertionError("Selenium Manager ran: the driver's path was not given")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)


def submit_form(driver: WebDriver) -> None:
    """Click the page's approve button and wait until its POST's redirect has loaded."""
    driver.find_element(By.ID, "approve").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/approved"))


def test_without_sign_in_pages_answer_401(browser: WebDriver, review_server: ReviewServer):
    browser.get(review_server.url + "/")

    assert review_server.seen == [Seen("GET", "/", None, HTTPStatus.UNAUTHORIZED)]
    assert browser.find_elements(By.ID, "approve") == []


def test_signed_in_form_post_carries_the_account(browser: WebDriver, review_server: ReviewServer):
    sign_in(browser, "alice", ACCOUNTS["alice"])
    browser.get(review_server.url + "/")
    submit_form(browser)

    assert browser.find_element(By.ID, "result").text == "approved by alice"
    assert review_server.seen == [
        Seen("GET", "/", "alice", HTTPStatus.OK),
        Seen("POST", "/approve", "alice", HTTPStatus.SEE_OTHER, "version=3"),
        Seen("GET", "/approved", "alice", HTTPStatus.OK),
    ]


def test_sign_in_again_switches_the_account_and_sign_out_drops_it(
    browser: WebDriver, review_server: ReviewServer
):
    sign_in(browser, "alice", "not-alice-password")
    browser.get(review_server.url + "/")
    sign_in(browser, "bob", ACCOUNTS["bob"])
    browser.get(review_server.url + "/")
    submit_form(browser)
    sign_out(browser)
    browser.get(review_server.url + "/")

    assert [(s.method, s.user, s.status) for s in review_server.seen] == [
        ("GET", None, HTTPStatus.UNAUTHORIZED),
        ("GET", "bob", HTTPStatus.OK),
        ("POST", "bob", HTTPStatus.SEE_OTHER),
        ("GET", "bob", HTTPStatus.OK),
        ("GET", None, HTTPStatus.UNAUTHORIZED),
    ]


def test_a_missing_chromium_fails_naming_make_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither chromium nor chromedriver on it

    with (
        pytest.raises(
            pytest.fail.Exception, match=r"chromium and chromedriver not found.*`make install`"
        ),
        headless_chromium(tmp_path),
    ):
        pass
