"""What a Kite Ticker connection is subscribed to, and the client messages that change it.

Client text messages (JSON): ``{"a": "subscribe", "v": [tokens]}``,
``{"a": "unsubscribe", "v": [tokens]}`` and ``{"a": "mode", "v": [mode, [tokens]]}``.
New subscriptions start in ``quote`` mode, as Kite's do. A ``mode`` message for a token not
yet subscribed subscribes it in that mode. Problems are reported as error texts (sent to
the client as ``{"type": "error", "data": ...}``); valid parts of a message still apply.
Pure: no sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from market_bridge.kite.models import MODES, Mode

DEFAULT_MODE: Mode = "quote"
MAX_TOKENS = 3000


@dataclass(slots=True)
class Outcome:
    """Tokens whose stream just started or changed mode, and errors for the client."""

    changed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _token_list(value: Any) -> tuple[list[int], list[Any]]:
    """Valid ints and the rejected items of a client's token list."""
    if not isinstance(value, list):
        return [], [value]
    good = [v for v in value if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    bad = [v for v in value if not (isinstance(v, int) and not isinstance(v, bool) and v > 0)]
    return good, bad


class Subscriptions:
    """Token -> mode for one connection, capped at ``limit`` tokens."""

    def __init__(self, is_known: Callable[[int], bool], limit: int = MAX_TOKENS) -> None:
        self.modes: dict[int, Mode] = {}
        self.is_known = is_known
        self.limit = limit
        self.version = 0  # bumped on every change, so callers can cache per subscription set

    def __len__(self) -> int:
        return len(self.modes)

    def handle(self, message: str | bytes) -> Outcome:
        out = Outcome()
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            out.errors.append("invalid message: not JSON")
            return out
        if not isinstance(msg, dict) or "a" not in msg:
            out.errors.append('invalid message: expected {"a": action, "v": value}')
            return out
        action, value = msg.get("a"), msg.get("v")
        if action == "subscribe":
            self._subscribe(value, None, out)
        elif action == "unsubscribe":
            tokens, bad = _token_list(value)
            if bad:
                out.errors.append(f"invalid instrument tokens: {_show(bad)}")
            for token in tokens:
                if self.modes.pop(token, None) is not None:
                    self.version += 1
        elif action == "mode":
            if not isinstance(value, list) or len(value) != 2 or value[0] not in MODES:
                out.errors.append(
                    f'invalid mode message: expected ["ltp"|"quote"|"full", [tokens]], got {value!r}'
                )
            else:
                self._subscribe(value[1], value[0], out)
        else:
            out.errors.append(f"invalid action {action!r}: use subscribe, unsubscribe or mode")
        return out

    def _subscribe(self, value: Any, mode: Mode | None, out: Outcome) -> None:
        tokens, bad = _token_list(value)
        unknown = [t for t in tokens if not self.is_known(t)]
        if bad or unknown:
            out.errors.append(f"invalid instrument tokens: {_show(bad + unknown)}")
        over: list[int] = []
        for token in dict.fromkeys(tokens):
            if token in unknown:
                continue
            current = self.modes.get(token)
            if current is None and len(self.modes) >= self.limit:
                over.append(token)
                continue
            new_mode = mode or current or DEFAULT_MODE
            if new_mode != current:
                self.modes[token] = new_mode
                self.version += 1
                out.changed.append(token)
            elif mode is None:
                out.changed.append(token)  # re-subscribing asks for a fresh snapshot
        if over:
            out.errors.append(
                f"subscription limit of {self.limit} instruments per connection exceeded; "
                f"{len(over)} not subscribed: {_show(over)}"
            )

    def by_mode(self) -> dict[Mode, list[int]]:
        groups: dict[Mode, list[int]] = {}
        for token, mode in self.modes.items():
            groups.setdefault(mode, []).append(token)
        return groups


def _show(items: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
