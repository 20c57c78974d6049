"""JSON request bodies: parse and type-check, every problem a 400 naming the field."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from sanic import Request

from api.errors import bad_request


def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` unless ``required``."""
    raw = request.body or b""
    if not raw.strip():
        if required:
            raise bad_request("invalid body", "a JSON object body is required")
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("invalid JSON", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request(
            "invalid body", f"expected a JSON object, got {_json_type(data)}"
        )
    return data


def check_keys(
    body: dict[str, Any], allowed: Collection[str], required: Collection[str] = ()
) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(
            "invalid body",
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"valid fields: {', '.join(sorted(allowed))}",
        )
    missing = [k for k in required if body.get(k) is None]
    if missing:
        raise bad_request("invalid body", f"missing field(s): {', '.join(missing)}")


def string_field(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad_request("invalid body", f"{key} is required")
        return None
    if not isinstance(value, str):
        raise bad_request("invalid body", f"{key} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise bad_request("invalid body", f"{key} must not be empty")
    return value


def string_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request(
            "invalid body", f"{key} must be a list of strings, got {_json_type(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise bad_request(
                "invalid body", f"{key}[{i}] must be a string, got {_json_type(item)}"
            )
    return value


def bool_field(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad_request("invalid body", f"{key} must be true or false, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
