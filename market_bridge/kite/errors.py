"""Kite errors split the way callers act on them (as venue adapters do):

- ``KiteTokenError`` (fatal): the access token is invalid or expired; stop and log in again.
- ``KiteInputError`` (non-retryable): this request is wrong (bad range, unknown token);
  skip it with the reason.
- ``KiteRetryableError``: rate limit (429), server errors (5xx), network failures; retry
  with backoff.
"""

from __future__ import annotations

LOGIN_HINT = "access token invalid or expired — run `market-bridge kite login`"


class KiteError(Exception):
    """Base of every Kite error we raise."""


class KiteTokenError(KiteError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{LOGIN_HINT}" + (f" ({detail})" if detail else ""))


class KiteInputError(KiteError):
    pass


class KiteRetryableError(KiteError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SubscriptionLimitError(KiteError):
    """More instruments than Kite allows (3000 per connection x 3 connections per key)."""
