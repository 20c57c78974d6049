"""asyncio helpers shared by the collection loops."""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """True when the current task was asked to stop. Long-running loops check it because
    ``asyncio.wait_for`` (Python 3.11) can swallow a cancellation that arrives just as its
    inner future completes; the loop would then run on and its owner wait forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
