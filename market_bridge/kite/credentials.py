"""Where Kite credentials come from and where `kite login` puts the access token.

Environment first (``ZERODHA_API_KEY`` / ``KITE_API_KEY``, ``ZERODHA_ACCESS_TOKEN`` /
``KITE_ACCESS_TOKEN``, ``ZERODHA_API_SECRET`` / ``KITE_API_SECRET``), then the session file
``MB_HOME/kite.env`` written by ``market-bridge kite login`` (mode 0600). The CLI loads
that file into the environment at start-up for variables that are not already set, so
``${ZERODHA_ACCESS_TOKEN}`` in collectors.yaml resolves to the latest login.

Kite's endpoints: ``KITE_API_ROOT`` and ``KITE_WS_ROOT`` (default: Kite's production
endpoints as the kiteconnect package defines them). Point them at the simulator to test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

from market_bridge.kite.models import IST
from market_bridge.settings import mb_home

ENV_FILE_NAME = "kite.env"
_KEYS = ("ZERODHA_API_KEY", "ZERODHA_ACCESS_TOKEN", "KITE_TOKEN_EXPIRES_AT", "KITE_USER_ID")


def mask(secret: str | None) -> str:
    """Show at most the first and last two characters of a secret."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "****"
    return f"{secret[:2]}****{secret[-2:]}"


@dataclass(frozen=True)
class KiteCredentials:
    api_key: str | None = field(repr=False)
    access_token: str | None = field(repr=False)
    api_secret: str | None = field(repr=False, default=None)

    @property
    def complete(self) -> bool:
        return bool(self.api_key and self.access_token)

    def __repr__(self) -> str:
        return (f"KiteCredentials(api_key={mask(self.api_key)!r}, "
                f"access_token={'****' if self.access_token else None!r})")


def _first(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def env_file(home: Path | None = None) -> Path:
    return (home or mb_home()) / ENV_FILE_NAME


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        values[k.strip()] = v.strip()
    return values


def load_env_file(home: Path | None = None) -> None:
    """Export the stored session into os.environ where the variable is not set."""
    for k, v in read_env_file(env_file(home)).items():
        if k in _KEYS and not os.environ.get(k):
            os.environ[k] = v


def from_env() -> KiteCredentials:
    return KiteCredentials(
        api_key=_first("ZERODHA_API_KEY", "KITE_API_KEY"),
        access_token=_first("ZERODHA_ACCESS_TOKEN", "KITE_ACCESS_TOKEN"),
        api_secret=_first("ZERODHA_API_SECRET", "KITE_API_SECRET"),
    )


def api_root() -> str | None:
    return os.environ.get("KITE_API_ROOT") or None


def ws_root() -> str:
    from kiteconnect import KiteTicker

    return os.environ.get("KITE_WS_ROOT") or str(KiteTicker.ROOT_URI)


def token_expiry(login_time: datetime) -> datetime:
    """Kite access tokens expire at 06:00 IST the next morning (regulatory)."""
    local = login_time.astimezone(IST)
    six = datetime.combine(local.date(), time(6, 0), tzinfo=IST)
    return six if local < six else six + timedelta(days=1)


def store_session(api_key: str, access_token: str, user_id: str, login_time: datetime,
                  home: Path | None = None) -> tuple[Path, datetime]:
    path = env_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    expires = token_expiry(login_time)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# written by `market-bridge kite login`; keep private\n")
        fh.write(f"ZERODHA_API_KEY={api_key}\n")
        fh.write(f"ZERODHA_ACCESS_TOKEN={access_token}\n")
        fh.write(f"KITE_USER_ID={user_id}\n")
        fh.write(f"KITE_TOKEN_EXPIRES_AT={expires.isoformat()}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path, expires
