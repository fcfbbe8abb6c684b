"""Settings: parsing, the API key rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from prompt_ledger.config import Settings


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = make()
    assert s.execution_retry_delays == [5.0, 30.0, 120.0]
    assert s.provider_timeout_s == 60
    assert s.recovery_timeout_s == 300
    assert s.max_request_bytes == 8 * 1024 * 1024
    assert s.render_timeout_s == 2
    assert s.sweep_interval_s == 15
    assert s.redis_url is None
    assert s.ui_session_secret is None  # a random one per process (ui.install_ui)
    assert s.ui_session_max_age_s == 12 * 3600
    assert s.resolved_database_url == f"sqlite:///{tmp_path / '.promptledger' / 'promptledger.db'}"


def test_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k-one, k-two")
    monkeypatch.setenv("EXECUTION_RETRY_DELAYS", "0.5,1,2.5")
    s = make()
    assert s.accepted_api_keys() == ["k-one", "k-two"]
    assert s.execution_retry_delays == [0.5, 1.0, 2.5]


def test_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("API_KEY", "pl-secret-value")
    monkeypatch.setenv("UI_SESSION_SECRET", "ui-secret-value")
    s = make()
    assert "secret-value" not in repr(s)
    assert "secret-value" not in str(s.model_dump())


@pytest.mark.parametrize("key", ["changeme", "CHANGEME", "your-api-key", "dev-api-key"])
def test_placeholder_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        make(api_key=key)


@pytest.mark.parametrize(
    ("name", "value"),
    [("execution_retry_delays", "1,-2"), ("provider_timeout_s", 0), ("max_request_bytes", -1)],
)
def test_bad_values_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValidationError):
        make(**{name: value})


class TestGeneratedKey:
    def test_no_key_configured_means_no_key_accepted(self, tmp_path: Path) -> None:
        assert make(promptledger_home=tmp_path).accepted_api_keys() == []

    def test_generated_once_then_reused(self, tmp_path: Path) -> None:
        s = make(promptledger_home=tmp_path / "home")
        key, generated = s.ensure_api_key()
        assert generated
        assert len(key) > 30
        assert s.accepted_api_keys() == [key]
        assert (tmp_path / "home" / "api_key").stat().st_mode & 0o777 == 0o600
        again, generated_again = make(promptledger_home=tmp_path / "home").ensure_api_key()
        assert (again, generated_again) == (key, False)

    def test_configured_key_wins_over_stored_one(self, tmp_path: Path) -> None:
        make(promptledger_home=tmp_path).ensure_api_key()
        s = make(promptledger_home=tmp_path, api_key="from-env-key")
        assert s.accepted_api_keys() == ["from-env-key"]
        assert s.ensure_api_key() == ("from-env-key", False)
