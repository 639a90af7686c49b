import pytest


def test_passwords_are_hidden_in_uris():
    from components.core.tracking_server import redacted

    assert redacted("postgresql://u:s3cret@db:5432/m") == "postgresql://u:***@db:5432/m"
    assert redacted("http://host:5000") == "http://host:5000"


def test_an_unreachable_tracking_server_is_one_clear_error(monkeypatch, workspace):
    from components.core.errors import Unreachable
    from components.core.tracking_server import check_tracking_store
    from tests.servers.processes import free_port

    uri = f"http://ana:s3cret@127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(Unreachable, match=r"http://ana:\*\*\*@127\.0\.0\.1:\d+ cannot be reached"):
        check_tracking_store(workspace.root)
    monkeypatch.setenv("WIKILM_TRACKING", "off")
    check_tracking_store(workspace.root)  # nothing to reach when nothing is recorded


def test_patience_retries_until_the_server_answers_then_gives_up(monkeypatch):
    import requests

    from components.core.errors import Unreachable
    from components.core.tracking_server import patiently

    monkeypatch.setattr("time.sleep", lambda seconds: None)
    calls = []

    def down_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.exceptions.ConnectionError("refused")
        return "logged"

    def down() -> None:
        raise requests.exceptions.ConnectionError("refused")

    def refused() -> None:
        raise ValueError("not a connection problem")

    assert patiently(down_twice, "http://u:pw@h:1", "metrics") == "logged"
    assert len(calls) == 3
    with pytest.raises(ValueError, match="not a connection problem"):
        patiently(refused, "http://h:1", "metrics")  # only outages are waited out
    monkeypatch.setenv("WIKILM_TRACKING_PATIENCE_S", "0")
    with pytest.raises(Unreachable, match=r"http://u:\*\*\*@h:1 did not answer"):
        patiently(down, "http://u:pw@h:1", "metrics")
