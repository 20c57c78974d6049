"""Environment settings: defaults, and a bad value names the variable and the problem."""

from __future__ import annotations

import pytest

from market_bridge.settings import SettingsError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MB_API_PORT", "MB_API_WORKERS", "MB_API_HOST"):
        monkeypatch.delenv(key, raising=False)
    s = load_settings()
    assert (s.api_host, s.api_port, s.api_workers) == ("127.0.0.1", 8080, 1)


def test_api_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_API_WORKERS", "2")
    assert load_settings().api_workers == 2


@pytest.mark.parametrize(("key", "value", "message"), [
    ("MB_API_WORKERS", "0", "MB_API_WORKERS=0 is not a valid number of worker processes"),
    ("MB_API_WORKERS", "two", "MB_API_WORKERS='two' is not an integer"),
    ("MB_API_PORT", "70000", "MB_API_PORT=70000 is not a valid TCP port"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, key: str, value: str,
                                      message: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
