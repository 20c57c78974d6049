"""Named SQL queries and the small modules that run them, one per table.

SQL lives in ``*.sql`` files beside the module that runs it. A file holds several queries,
each introduced by a ``-- name: <query_name>`` line (the aiosql convention). Queries use
psycopg placeholders (``%(name)s``) only: nothing is ever formatted into SQL text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

_NAME_PREFIX = "-- name:"


class QueryNotFound(KeyError):
    pass


@cache
def load_queries(filename: str) -> dict[str, str]:
    """Parse ``filename`` (in this package) into ``{query_name: sql_text}``."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text, source=filename)


def parse_queries(text: str, source: str = "<sql>") -> dict[str, str]:
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if name is None:
            return
        body = "\n".join(lines).strip()
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = body

    for line in text.splitlines():
        if line.startswith(_NAME_PREFIX):
            flush()
            name = line[len(_NAME_PREFIX) :].strip()
            if not name.isidentifier():
                raise ValueError(f"{source}: bad query name {name!r}")
            if name in queries:
                raise ValueError(f"{source}: query {name!r} defined twice")
            lines = []
        elif name is not None:
            lines.append(line)
    flush()
    return queries


def query(filename: str, name: str) -> str:
    try:
        return load_queries(filename)[name]
    except KeyError:
        raise QueryNotFound(f"no query {name!r} in {filename}") from None
