"""``collectors.yaml``: which collectors exist, their Kite credentials and subscriptions.

The format is the seed's (see configs/collectors.example.yaml and docs/configuration.md)::

    collectors:
      - name: primary
        api_key: ${ZERODHA_API_KEY}
        access_token: ${ZERODHA_ACCESS_TOKEN}
        auto_start: true
        watchlists: [NIFTY50, BANKNIFTY]
        mode: full

We walk YAML's node tree (``yaml.compose``) rather than the loaded objects so that every
error can name the file, line, column and key. Values may reference environment variables
as ``${NAME}`` or ``${NAME:-default}``; ``$${`` is a literal ``${``. Secrets (api_key,
access_token, api_secret) never appear in error messages or reprs; neither does any value
that came from an environment variable.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from market_bridge.kite.models import MODES, Mode
from market_bridge.market.symbols import InvalidSymbol, parse_symbol
from market_bridge.watchlists import get_watchlist, has_watchlist, merge_watchlists, watchlist_names

CONFIG_ENV = "MB_COLLECTORS_CONFIG"
CONFIG_FILENAME = "collectors.yaml"
DEFAULT_MODE: Mode = "quote"
SECRET_KEYS = frozenset({"api_key", "access_token", "api_secret"})
COLLECTOR_KEYS = (
    "name",
    "api_key",
    "access_token",
    "api_secret",
    "auto_start",
    "watchlists",
    "symbols",
    "mode",
)
TOP_LEVEL_KEYS = ("collectors",)
# Names appear in API paths (/collectors/{name}) and logs: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(ValueError):
    """A collectors config we cannot use. ``str()`` names file, line, column and key."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = str(path)
        self.line = line
        self.column = column
        self.key = key
        self.hint = hint
        where = self.path
        if line is not None:
            where += f": line {line}" + (f", column {column}" if column is not None else "")
        text = f"{where}: " + (f"{key}: " if key else "") + problem
        if hint:
            text += f"; {hint}"
        super().__init__(text)


def masked(secret: str | None) -> str:
    """Show a secret safely: ``"abcdefghijkl"`` -> ``"ab****kl"``; short ones -> ``"****"``.

    Only secrets of 12+ characters keep their ends (4 of 12+ characters reveal too little to
    matter but let a user tell two keys apart).
    """
    if secret is None or secret == "":
        return "<unset>"
    if len(secret) < 12:
        return "****"
    return f"{secret[:2]}****{secret[-2:]}"


@dataclass(frozen=True)
class CollectorConfig:
    name: str
    api_key: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)
    auto_start: bool = False
    watchlists: tuple[str, ...] = ()  # canonical (upper-case) watchlist names
    symbols: tuple[str, ...] = ()  # display form: RELIANCE, BSE:SENSEX
    mode: Mode = DEFAULT_MODE
    line: int | None = field(default=None, compare=False)  # where it is defined, for messages

    def __repr__(self) -> str:
        return (
            f"CollectorConfig(name={self.name!r}, api_key={masked(self.api_key)!r}, "
            f"access_token={masked(self.access_token)!r}, "
            f"api_secret={masked(self.api_secret)!r}, auto_start={self.auto_start}, "
            f"watchlists={self.watchlists!r}, symbols={self.symbols!r}, mode={self.mode!r})"
        )

    __str__ = __repr__

    @property
    def masked_api_key(self) -> str:
        return masked(self.api_key)

    @property
    def masked_access_token(self) -> str:
        return masked(self.access_token)

    @property
    def has_credentials(self) -> bool:
        """False means: use the local Kite simulator."""
        return bool(self.api_key and self.access_token)

    def subscription(self, resolved: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Symbols to subscribe: the watchlists' members, then ``symbols``, de-duplicated.

        Dynamic watchlists (movers) need their current members in ``resolved``.
        """
        merged = merge_watchlists(self.watchlists, resolved)
        return list(dict.fromkeys([*merged, *self.symbols]))

    def public_dict(self) -> dict[str, Any]:
        """What the API may show: secrets masked."""
        return {
            "name": self.name,
            "api_key": masked(self.api_key),
            "access_token": masked(self.access_token),
            "auto_start": self.auto_start,
            "watchlists": list(self.watchlists),
            "symbols": list(self.symbols),
            "mode": self.mode,
            "has_credentials": self.has_credentials,
        }


@dataclass(frozen=True)
class CollectorsConfig:
    path: Path
    collectors: tuple[CollectorConfig, ...] = ()
    exists: bool = True  # False: the default file is absent, so no collectors are configured

    def get(self, name: str) -> CollectorConfig:
        for c in self.collectors:
            if c.name == name:
                return c
        raise KeyError(
            f"no collector {name!r} in {self.path}; configured: {', '.join(self.names) or '(none)'}"
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.collectors]

    @property
    def auto_start(self) -> list[CollectorConfig]:
        return [c for c in self.collectors if c.auto_start]


# ---- loading ---------------------------------------------------------------------------


def config_path(path: str | Path | None = None) -> Path:
    """The argument, else ``$MB_COLLECTORS_CONFIG``, else ``collectors.yaml`` in the
    Market Bridge home (``~/.market-bridge/`` unless ``MB_HOME`` says otherwise)."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    from market_bridge.settings import mb_home

    return mb_home() / CONFIG_FILENAME


def load_collectors_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> CollectorsConfig:
    """Read and validate the collectors config. ``env`` defaults to ``os.environ``.

    A missing file at the default location means "no collectors configured"; a missing
    file that was asked for (argument or env var) is an error.
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    resolved = config_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                "file not found",
                path=resolved,
                hint=(
                    "create it (start from configs/collectors.example.yaml) "
                    f"or point {CONFIG_ENV} at an existing file"
                ),
            ) from None
        return CollectorsConfig(path=resolved, exists=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the file ({exc.__class__.__name__}: {exc})",
            path=resolved,
            hint="check its permissions and that it is UTF-8 text",
        ) from None
    return parse_collectors_config(text, resolved, os.environ if env is None else env)


def parse_collectors_config(
    text: str, path: str | Path, env: Mapping[str, str]
) -> CollectorsConfig:
    """Validate the YAML ``text`` (pure; ``path`` is only used in messages)."""
    return _Parser(Path(path), env).parse(text)


class _EnvProblem(Exception):
    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint


@dataclass(frozen=True, slots=True)
class _Scalar:
    value: Any  # typed as YAML resolves it after env expansion
    text: str  # the expanded text
    from_env: bool  # True when ${...} contributed: never echo the value
    node: yaml.ScalarNode


class _Parser:
    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self._mappings: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
        # A loader instance gives us YAML's own scalar resolution and construction.
        self._loader = yaml.SafeLoader("")

    def error(
        self, node: yaml.Node | None, key: str | None, problem: str, hint: str | None = None
    ) -> ConfigError:
        line = column = None
        if node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        return ConfigError(problem, path=self.path, line=line, column=column, key=key, hint=hint)

    # ---- document structure --------------------------------------------------------

    def parse(self, text: str) -> CollectorsConfig:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            # Built from the parts, not str(exc): that quotes the source line, which may
            # hold a secret.
            mark = exc.problem_mark or exc.context_mark
            problem = "YAML syntax error: " + (exc.problem or "cannot parse")
            if exc.context:
                ctx = exc.context_mark
                started = (
                    f" that starts at line {ctx.line + 1}"
                    if ctx is not None and mark is not None and ctx.line != mark.line
                    else ""
                )
                problem += f" ({exc.context}{started})"
            hint = "check indentation, quoting and that list items start with '- '"
            lines = text.splitlines()
            if mark is not None and mark.line < len(lines) and "${" in lines[mark.line]:
                # '{' ends a plain scalar inside [ ] or { }: a common trip with ${VAR}.
                hint = 'quote ${...} references inside [ ] or { }, e.g. ["${WATCHLIST}"]'
            raise ConfigError(
                problem,
                path=self.path,
                line=None if mark is None else mark.line + 1,
                column=None if mark is None else mark.column + 1,
                hint=hint,
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc.__class__.__name__}", path=self.path) from None
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
            return CollectorsConfig(path=self.path)
        if not isinstance(root, yaml.MappingNode):
            raise self.error(
                root, None, "expected a mapping with a 'collectors:' list at the top level"
            )
        items = self.mapping(root, "", TOP_LEVEL_KEYS)
        node = items.get("collectors")
        if node is None or _is_null(node[1]):
            return CollectorsConfig(path=self.path)
        key_node, seq = node
        if not isinstance(seq, yaml.SequenceNode):
            raise self.error(
                seq,
                "collectors",
                "expected a list of collectors",
                "start each collector with '- name: ...'",
            )
        collectors: list[CollectorConfig] = []
        seen: dict[str, int | None] = {}
        for i, item in enumerate(seq.value):
            collector = self.collector(item, f"collectors[{i}]")
            folded = collector.name.casefold()
            if folded in seen:
                name_node = self.mapping(item, f"collectors[{i}]", COLLECTOR_KEYS)["name"][1]
                raise self.error(
                    name_node,
                    f"collectors[{i}].name",
                    f"duplicate collector name {collector.name!r} (first defined at line "
                    f"{seen[folded]})",
                    "give every collector a unique name",
                )
            seen[folded] = collector.line
            collectors.append(collector)
        return CollectorsConfig(path=self.path, collectors=tuple(collectors))

    def mapping(
        self, node: yaml.MappingNode, where: str, valid: Sequence[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys of a mapping node -> (key node, value node); unknown/duplicate keys fail.

        YAML merge keys (``<<: *anchor``) are honoured: keys written in the mapping itself
        override merged ones, but writing the same key twice is an error.
        """
        cached = self._mappings.get(id(node))
        if cached is not None:
            return cached  # flatten_mapping below rewrites the node: only do it once
        own: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, where or None, "keys must be plain words")
            if key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value
            if key in own:
                first_line = own[key].start_mark.line + 1
                raise self.error(
                    key_node,
                    f"{where}.{key}" if where else key,
                    f"duplicate key {key!r} (already set at line {first_line})",
                    "keep one of them",
                )
            own[key] = key_node
        self._loader.flatten_mapping(node)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, where or None, "keys must be plain words")
            key = key_node.value
            path = f"{where}.{key}" if where else key
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else None
                valid_list = f"valid keys: {', '.join(valid)}"
                raise self.error(
                    key_node,
                    path,
                    f"unknown key {key!r}",
                    f"{hint} ({valid_list})" if hint else valid_list,
                )
            out[key] = (key_node, value_node)  # merged keys come first: own keys win
        self._mappings[id(node)] = out
        return out

    # ---- one collector -------------------------------------------------------------

    def collector(self, node: yaml.Node, where: str) -> CollectorConfig:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(
                node,
                where,
                "expected a collector (a mapping with name, watchlists, mode, ...)",
                "write it as '- name: primary' followed by indented keys",
            )
        items = self.mapping(node, where, COLLECTOR_KEYS)
        line = node.start_mark.line + 1
        if "name" not in items:
            raise self.error(
                node,
                f"{where}.name",
                "missing required key 'name'",
                "add 'name: <unique name>' to this collector",
            )
        name = self.string(items["name"][1], f"{where}.name")
        if not _NAME.match(name):
            raise self.error(
                items["name"][1],
                f"{where}.name",
                f"invalid collector name {name!r}",
                "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        secrets = {
            key: self.secret(items[key][1], f"{where}.{key}") if key in items else None
            for key in COLLECTOR_KEYS
            if key in SECRET_KEYS
        }
        auto_start = False
        if "auto_start" in items:
            auto_start = self.boolean(items["auto_start"][1], f"{where}.auto_start")
        mode: Mode = DEFAULT_MODE
        if "mode" in items:
            mode = self.mode(items["mode"][1], f"{where}.mode")
        watchlists = self.watchlists(items.get("watchlists"), f"{where}.watchlists")
        symbols = self.symbols(items.get("symbols"), f"{where}.symbols")
        if not watchlists and not symbols:
            raise self.error(
                node,
                f"{where}.watchlists",
                f"collector {name!r} subscribes to nothing",
                "add 'watchlists:' (e.g. [NIFTY50]) or 'symbols:' (e.g. [RELIANCE, TCS])",
            )
        return CollectorConfig(
            name=name,
            api_key=secrets["api_key"],
            access_token=secrets["access_token"],
            api_secret=secrets["api_secret"],
            auto_start=auto_start,
            watchlists=watchlists,
            symbols=symbols,
            mode=mode,
            line=line,
        )

    def watchlists(self, item: tuple[yaml.Node, yaml.Node] | None, key: str) -> tuple[str, ...]:
        names: list[str] = []
        for node, value in self.string_list(item, key, example="[NIFTY50, BANKNIFTY]"):
            if not has_watchlist(value):
                shown = "this value" if node.from_env else repr(value)
                close = difflib.get_close_matches(value.upper(), watchlist_names(), n=1)
                guess = f"did you mean {close[0]!r}? " if close and not node.from_env else ""
                raise self.error(
                    node.node,
                    key,
                    f"unknown watchlist {shown}",
                    f"{guess}valid watchlists: {', '.join(watchlist_names())}",
                )
            names.append(get_watchlist(value).name)
        return tuple(dict.fromkeys(names))

    def symbols(self, item: tuple[yaml.Node, yaml.Node] | None, key: str) -> tuple[str, ...]:
        out: list[str] = []
        for node, value in self.string_list(item, key, example="[RELIANCE, BSE:SENSEX]"):
            try:
                out.append(parse_symbol(value).display)
            except InvalidSymbol as exc:
                problem = "invalid symbol" if node.from_env else f"invalid symbol {value!r}"
                raise self.error(
                    node.node,
                    key,
                    f"{problem}: {exc.problem}",
                    "write TRADINGSYMBOL (NSE) or EXCHANGE:TRADINGSYMBOL, e.g. RELIANCE, "
                    "BSE:SENSEX, 'NSE:NIFTY 50'",
                ) from None
        return tuple(dict.fromkeys(out))

    # ---- typed values --------------------------------------------------------------

    def scalar(self, node: yaml.Node, key: str, expected: str) -> _Scalar:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise self.error(node, key, f"expected {expected}, got {kind}")
        text = node.value
        from_env = "${" in text
        if from_env:
            try:
                text = self.expand(text)
            except _EnvProblem as exc:
                raise self.error(node, key, exc.problem, exc.hint) from None
        tag = node.tag
        if from_env and node.style is None:
            # Plain scalars are typed by their text: re-resolve after expansion, so
            # "auto_start: ${AUTO}" with AUTO=true is a boolean.
            tag = self._loader.resolve(yaml.ScalarNode, text, (True, False))
        try:
            value = self._loader.construct_object(
                yaml.ScalarNode(tag, text, node.start_mark, node.end_mark, node.style)
            )
        except yaml.YAMLError:
            value = text
        return _Scalar(value, text, from_env, node)

    def string(self, node: yaml.Node, key: str) -> str:
        s = self.scalar(node, key, "a string")
        if not isinstance(s.value, str) or not s.value.strip():
            raise self.error(
                node, key, f"expected a non-empty string, got {_describe(s)}", "quote it"
            )
        return s.value.strip()

    def secret(self, node: yaml.Node, key: str) -> str | None:
        # Secrets are text whatever they look like (an all-digit key is still a string);
        # empty or null means "not configured" (use the simulator).
        s = self.scalar(node, key, "a string")
        if s.value is None or s.text.strip() == "":
            return None
        if not s.from_env and node.tag.endswith((":bool", ":float")):
            raise self.error(node, key, "expected a string", "quote the value")
        return s.text.strip()

    def boolean(self, node: yaml.Node, key: str) -> bool:
        s = self.scalar(node, key, "true or false")
        if not isinstance(s.value, bool):
            raise self.error(node, key, f"expected true or false, got {_describe(s)}")
        return s.value

    def mode(self, node: yaml.Node, key: str) -> Mode:
        s = self.scalar(node, key, "a mode")
        value = s.value.strip().lower() if isinstance(s.value, str) else None
        for m in MODES:
            if value == m:
                return m
        close = difflib.get_close_matches(value or "", MODES, n=1)
        guess = f"did you mean {close[0]!r}? " if close and not s.from_env else ""
        raise self.error(
            node,
            key,
            f"invalid mode {_describe(s)}",
            f"{guess}use one of: {', '.join(MODES)} (default {DEFAULT_MODE})",
        )

    def string_list(
        self, item: tuple[yaml.Node, yaml.Node] | None, key: str, example: str
    ) -> list[tuple[_Scalar, str]]:
        if item is None or _is_null(item[1]):
            return []
        node = item[1]
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, key, "expected a list", f"write it as {example}")
        out: list[tuple[_Scalar, str]] = []
        for i, element in enumerate(node.value):
            s = self.scalar(element, f"{key}[{i}]", "a string")
            if not isinstance(s.value, str) or not s.value.strip():
                raise self.error(
                    element, f"{key}[{i}]", f"expected a name, got {_describe(s)}", "quote it"
                )
            out.append((s, s.value.strip()))
        return out

    def expand(self, text: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            body, closed = match.group(1), match.group(2)
            if not closed:
                raise _EnvProblem(
                    "unterminated '${' in value", "close it with '}' or write '$${' for a '${'"
                )
            name, sep, default = body.partition(":-")
            if not _ENV_NAME.match(name):
                raise _EnvProblem(
                    f"'${{{name}}}' is not a valid environment variable reference",
                    "use ${NAME} or ${NAME:-default} with letters, digits and '_'",
                )
            value = self.env.get(name)
            if value is None or (sep and value == ""):
                if sep:
                    return default
                raise _EnvProblem(
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting, or write ${{{name}:-default}}",
                )
            return value

        return _ENV_REF.sub(substitute, text)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _describe(s: _Scalar) -> str:
    """A value for an error message, unless it came from the environment."""
    if s.from_env:
        return f"the value from {s.node.value}"
    if s.value is None:
        return "nothing (null)"
    return repr(s.value)
