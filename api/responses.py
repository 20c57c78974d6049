"""JSON responses via orjson: aware datetimes serialise as RFC 3339 with their offset
(IST values give ``+05:30``), NaN/inf as null."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
from sanic.response import HTTPResponse, raw

JSON = "application/json"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):  # numeric aggregates; queries cast, this is the backstop
        return float(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    return raw(dumps(data), status=status, headers=dict(headers or {}), content_type=JSON)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A 200 answer as bytes: built once, sent as often as wanted (``api.bar_cache`` keeps
    them). ``response()`` gives what ``json_response``/``formats.table_response`` give."""

    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> HTTPResponse:
        return raw(self.body, content_type=self.content_type, headers=dict(self.headers))


def json_rendered(data: Any) -> Rendered:
    return Rendered(dumps(data), JSON)
