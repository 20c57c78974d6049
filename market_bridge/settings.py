"""Process settings from environment variables, with documented defaults.

Everything has an embedded default so that `make run` works with nothing configured:
a local TimescaleDB cluster under ``MB_HOME`` and the Kite simulator. See
docs/configuration.md for the full list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not 0 < value < 65536 and name.endswith("_PORT"):
        raise SettingsError(f"{name}={value} is not a valid TCP port (1-65535)")
    if not 0 < value <= 64 and name.endswith("_WORKERS"):
        raise SettingsError(f"{name}={value} is not a valid number of worker processes (1-64)")
    return value


class SettingsError(ValueError):
    """A setting in the environment has a value we cannot use."""


def mb_home() -> Path:
    return Path(_env("MB_HOME", str(Path.home() / ".market-bridge"))).expanduser()


@dataclass(frozen=True)
class DatabaseSettings:
    external_url: str | None  # DATABASE_URL: use that server, start nothing
    host: str
    port: int
    name: str
    user: str
    os_user: str  # unprivileged OS user that runs the embedded server when we are root
    data_dir: Path
    log_file: Path

    @property
    def embedded(self) -> bool:
        return self.external_url is None


@dataclass(frozen=True)
class Settings:
    home: Path
    db: DatabaseSettings
    api_host: str
    api_port: int
    api_token: str | None = field(repr=False)
    api_workers: int
    sim_host: str
    sim_port: int
    prefect_port: int

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


def load_settings() -> Settings:
    home = mb_home()
    db = DatabaseSettings(
        external_url=os.environ.get("DATABASE_URL") or None,
        host=_env("MB_DB_HOST", "127.0.0.1"),
        port=_env_int("MB_DB_PORT", 5433),
        name=_env("MB_DB_NAME", "market_bridge"),
        user=_env("MB_DB_USER", "market_bridge"),
        os_user=_env("MB_DB_OS_USER", "marketbridge"),
        data_dir=Path(_env("MB_DB_DATA_DIR", str(home / "pgdata"))).expanduser(),
        log_file=Path(_env("MB_DB_LOG", str(home / "logs" / "postgres.log"))).expanduser(),
    )
    return Settings(
        home=home,
        db=db,
        api_host=_env("MB_API_HOST", "127.0.0.1"),
        api_port=_env_int("MB_API_PORT", 8080),
        api_token=os.environ.get("API_TOKEN") or None,
        api_workers=_env_int("MB_API_WORKERS", 1),
        sim_host=_env("MB_SIM_HOST", "127.0.0.1"),
        sim_port=_env_int("MB_SIM_PORT", 8081),
        prefect_port=_env_int("MB_PREFECT_PORT", 4200),
    )
