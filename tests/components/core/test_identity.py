def test_the_signed_in_account_is_who_acts(monkeypatch):
    from components.core.identity import current_user

    monkeypatch.setenv("WIKILM_USER", "ana")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert current_user() == "ana"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    assert current_user() == "trainer"
