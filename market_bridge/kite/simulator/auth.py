"""API key, access tokens and the request-token exchange, as Kite checks them.

The configured access token is valid from the start; ``POST /session/token`` with a valid
checksum issues another (derived from the request token, so the same login gives the same
token) and ``DELETE /session/token`` revokes one. The ``expire_token`` fault invalidates
tokens issued before it started. Pure: callers pass the time and the fault start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from market_bridge.kite.models import IST

USER_ID = "MB0001"
PROFILE: dict[str, Any] = {
    "user_id": USER_ID,
    "user_type": "individual",
    "email": "simulator@market-bridge.invalid",
    "user_name": "Market Bridge Simulator",
    "user_shortname": "Simulator",
    "broker": "ZERODHA",
    "exchanges": ["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"],
    "products": ["CNC", "NRML", "MIS", "BO", "CO"],
    "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
    "avatar_url": None,
    "meta": {"demat_consent": "physical"},
}


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


class AuthError(Exception):
    """Maps to a Kite error: ``error_type`` and HTTP status."""

    def __init__(self, message: str, error_type: str = "TokenException", status: int = 403):
        super().__init__(message)
        self.error_type = error_type
        self.status = status


@dataclass
class Auth:
    api_key: str
    access_token: str
    api_secret: str
    started: float  # when the configured token was "issued"

    def __post_init__(self) -> None:
        self._issued: dict[str, float] = {self.access_token: self.started}

    def is_valid(self, api_key: str | None, access_token: str | None,
                 expired_since: float | None) -> bool:  # fmt: skip
        """``expired_since``: start of an active expire_token fault, if any."""
        if api_key != self.api_key or not access_token:
            return False
        issued = self._issued.get(access_token)
        if issued is None:
            return False
        return expired_since is None or issued > expired_since

    def check_header(self, header: str | None, expired_since: float | None) -> None:
        """``Authorization: token api_key:access_token``; raises AuthError (403) otherwise."""
        scheme, _, creds = (header or "").partition(" ")
        api_key, _, token = creds.strip().partition(":")
        if scheme.lower() != "token" or not api_key or not token:
            raise AuthError("Incorrect `api_key` or `access_token`.")
        if (
            api_key == self.api_key
            and token in self._issued
            and not self.is_valid(api_key, token, expired_since)
        ):
            raise AuthError("Token is invalid or has expired.")
        if not self.is_valid(api_key, token, expired_since):
            raise AuthError("Incorrect `api_key` or `access_token`.")

    def login(self, api_key: str | None, request_token: str | None, sent_checksum: str | None,
              now: float) -> dict[str, Any]:  # fmt: skip
        """Exchange a request token; returns Kite's session payload."""
        if not api_key or not request_token or not sent_checksum:
            raise AuthError("Missing api_key, request_token or checksum", "InputException", 400)
        if api_key != self.api_key:
            raise AuthError("Invalid `api_key`.")
        if sent_checksum != checksum(api_key, request_token, self.api_secret):
            raise AuthError("Invalid `checksum`.")
        token = hashlib.sha256(f"access:{api_key}:{request_token}".encode()).hexdigest()[:32]
        # A re-login issues a fresh token even if it is the same string as before.
        self._issued[token] = max(now, self._issued.get(token, now))
        public = hashlib.sha256(f"public:{token}".encode()).hexdigest()[:32]
        login_time = datetime.fromtimestamp(now, IST).strftime("%Y-%m-%d %H:%M:%S")
        return {
            **PROFILE,
            "api_key": api_key,
            "access_token": token,
            "public_token": public,
            "enctoken": public,
            "refresh_token": "",
            "silo": "",
            "login_time": login_time,
        }

    def logout(self, api_key: str | None, access_token: str | None) -> None:
        if api_key != self.api_key or not access_token or access_token not in self._issued:
            raise AuthError("Incorrect `api_key` or `access_token`.")
        del self._issued[access_token]
