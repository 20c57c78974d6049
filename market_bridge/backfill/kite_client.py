"""Kite clients for batch work: credentials from the environment or the stored session.

Without credentials the simulator's well-known key and token are used, but only when
``KITE_API_ROOT`` points at a Kite simulator (it answers ``GET /sim/status``): real Kite
must never be sent made-up credentials, and a missing login must say how to fix it.
"""

from __future__ import annotations

from market_bridge.kite import credentials as creds
from market_bridge.kite.rest import KiteRest


class KiteNotConfigured(RuntimeError):
    pass


def is_simulator(root: str, timeout: float = 2.0) -> bool:
    import httpx  # only needed on this fallback path

    try:
        reply = httpx.get(f"{root.rstrip('/')}/sim/status", timeout=timeout)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.headers.get("content-type", "").startswith(
        "application/json")


def resolve_credentials() -> tuple[str, str, str | None]:
    """(api_key, access_token, api root or None for Kite production)."""
    creds.load_env_file()  # the stored session from `market-bridge kite login`
    found = creds.from_env()
    root = creds.api_root()
    if found.api_key and found.access_token:
        return found.api_key, found.access_token, root
    if root and is_simulator(root):
        # Imported here: the simulator package pulls in its server (Sanic, numpy).
        from market_bridge.kite.simulator.config import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY

        return (found.api_key or DEFAULT_API_KEY, found.access_token or DEFAULT_ACCESS_TOKEN,
                root)
    missing = "ZERODHA_ACCESS_TOKEN" if found.api_key else "ZERODHA_API_KEY"
    where = f"KITE_API_ROOT={root} is not a Kite simulator" if root else "KITE_API_ROOT is unset"
    raise KiteNotConfigured(
        f"no Kite credentials: {missing} is not set and {where}. Set ZERODHA_API_KEY and "
        "log in with `market-bridge kite login`, or point KITE_API_ROOT at the simulator "
        "(`market-bridge simulate`)"
    )


class KiteClients:
    """Makes one ``KiteRest`` per caller (per worker thread); all share the 3 req/s limiter
    of their API key."""

    def __init__(self, api_key: str, access_token: str, root: str | None) -> None:
        self._api_key = api_key
        self._access_token = access_token
        self.root = root

    def __call__(self) -> KiteRest:
        return KiteRest(self._api_key, self._access_token, root=self.root)

    def __repr__(self) -> str:  # never show the key or token
        return f"KiteClients(root={self.root!r})"

    @classmethod
    def from_env(cls) -> KiteClients:
        return cls(*resolve_credentials())
