"""The reviewers' approval page of the wikilm server app, driven in a real headless Chromium.

Against ``mlflow server --app-name wikilm`` on PostgreSQL: the version's author is refused on
the page; a reviewer approves with a reason, the champion moves, and the page shows the
decision in the model's history.
"""

from __future__ import annotations

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from components.registry.promotion import register_and_gate
from components.registry.store import CHAMPION, CLASSIFIER
from flows.cli import main
from tests.conftest import copy_workspace, make_params
from tests.servers.accounts import act_as
from tests.servers.browser import browser_fixture, sign_in  # noqa: F401 - `browser`

pytestmark = [pytest.mark.servers, pytest.mark.browser]
PAGE_SECONDS = 60


@pytest.fixture
def pending(wikilm_mlflow_server, exported_root, tmp_path, monkeypatch) -> str:
    """A classifier version the pipeline just registered; reviewer and author in the group."""
    server = wikilm_mlflow_server
    act_as(monkeypatch, server, "admin")
    for user in ("reviewer", "trainer"):  # the author too: four-eyes still refuses it
        assert main(["reviewers", "add", user]) == 0
    act_as(monkeypatch, server, "trainer")
    paths = copy_workspace(exported_root, tmp_path / "work")
    outcomes = register_and_gate(make_params(promote={"min_margin_over_tfidf": -1.0}), paths)
    yield next(o.version for o in outcomes if o.model == CLASSIFIER)
    act_as(monkeypatch, server, "admin")
    assert main(["reviewers", "remove", "trainer"]) == 0


def decide_on_page(browser, server, user: str, version: str, button: str, reason: str) -> str:
    """Sign in as ``user``, decide on ``version`` with ``reason``: the outcome shown."""
    sign_in(browser, user, server.passwords[user])
    browser.get(f"{server.uri}/wikilm/approvals")
    assert browser.find_element(By.ID, "user").text == user
    form = browser.find_element(By.ID, f"pending-{CLASSIFIER}-{version}")
    form.find_element(By.NAME, "reason").send_keys(reason)
    form.find_element(By.CSS_SELECTOR, f"button[value={button}]").click()
    # The click only starts the POST: wait for the answer page, the only one with a message
    # (the page as fetched has none). Chromium answers for the old page's nodes with errors
    # while it navigates: they mean "not yet".
    wait = WebDriverWait(browser, PAGE_SECONDS, ignored_exceptions=(WebDriverException,))
    return wait.until(expected_conditions.presence_of_element_located((By.ID, "message"))).text


def champion(server) -> str | None:
    """The classifier's champion as the registry says."""
    import requests

    answer = requests.get(
        f"{server.uri}/api/2.0/mlflow/registered-models/get",
        params={"name": CLASSIFIER},
        auth=("viewer", server.passwords["viewer"]),
        timeout=30,
    )
    aliases = {a["alias"]: a["version"] for a in answer.json()["registered_model"]["aliases"]}
    return aliases.get(CHAMPION)


def test_a_reviewer_approves_on_the_page_and_the_author_cannot(
    browser, wikilm_mlflow_server, pending
):
    server = wikilm_mlflow_server
    before = champion(server)

    refusal = decide_on_page(browser, server, "trainer", pending, "approve", "my own run")
    assert refusal.startswith("Refused: four-eyes rule: trainer registered")
    assert champion(server) == before
    # The page shows the gate's verdict and the metrics beside the champion and baselines.
    section = browser.find_element(By.ID, f"pending-{CLASSIFIER}-{pending}").text
    for shown in ("ok: macro-F1", "TF-IDF + LR", "macro-F1, test split", "MLflow run"):
        assert shown in section

    done = decide_on_page(browser, server, "reviewer", pending, "approve", "checked the errors")
    assert done == f"{CLASSIFIER} v{pending} approved by reviewer."
    assert champion(server) == pending
    history = browser.find_element(By.ID, f"history-{CLASSIFIER}")
    newest = history.find_elements(By.TAG_NAME, "tr")[1].text  # after the header row
    assert f"v{pending} approved reviewer checked the errors" in newest
    assert not browser.find_elements(By.ID, f"pending-{CLASSIFIER}-{pending}")
