"""Prefect artifacts that never break a flow.

Artifacts need a Prefect API and a flow run; called outside one (a flow function run
directly, a test without a server) these helpers do nothing. An API error is logged once,
not raised: an artifact is a view of the result, not the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

log = logging.getLogger(__name__)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def table(key: str, rows: Sequence[dict[str, Any]], description: str) -> None:
    if not _in_flow_run():
        return
    from prefect.artifacts import create_table_artifact

    try:
        create_table_artifact(list(rows), key=key, description=description)
    except Exception as exc:  # the API being unreachable must not fail the work
        log.warning("could not create table artifact %s: %s", key, exc)


def markdown(key: str, text: str, description: str) -> None:
    if not _in_flow_run():
        return
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(text, key=key, description=description)
    except Exception as exc:
        log.warning("could not create markdown artifact %s: %s", key, exc)


class ProgressArtifact:
    """A progress bar in the flow run's page; updates at most every ``interval`` seconds."""

    def __init__(self, key: str, description: str, interval: float = 1.0) -> None:
        self.key = key
        self.description = description
        self.interval = interval
        self._id: UUID | None = None
        self._last = 0.0
        self._broken = False

    def update(self, percent: float, force: bool = False) -> None:
        if self._broken or not _in_flow_run():
            return
        now = time.monotonic()
        if not force and self._id is not None and now - self._last < self.interval:
            return
        self._last = now
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        percent = max(0.0, min(100.0, percent))
        try:
            if self._id is None:
                # sync-compatible Prefect API: a UUID when called from sync code
                self._id = cast(UUID, create_progress_artifact(
                    percent, key=self.key, description=self.description))
            else:
                update_progress_artifact(self._id, percent)
        except Exception as exc:
            self._broken = True
            log.warning("could not update progress artifact %s: %s", self.key, exc)
