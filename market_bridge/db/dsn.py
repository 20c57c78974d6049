"""DSN helpers: never print a password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_dsn(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
