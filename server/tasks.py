"""Stopping background tasks for sure.

On Python 3.11 a task can swallow its cancellation: ``asyncio.wait_for`` returns the
inner result instead of raising when the cancellation lands in the same turn as that
result (fixed in 3.12, where ``wait_for`` is built on ``asyncio.timeout``), and
libraries built the same way do the same. A loop task (the clock, a worker) that swallows
one cancellation goes round again, and a shutdown that waits for it waits forever. So
server code waits with ``asyncio.timeout``, never ``wait_for``, and stops its tasks with
:func:`stop_tasks`, which cancels again until each has ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

log = logging.getLogger(__name__)

RECANCEL_SECS: Final = 0.5  # a task still running this long after its cancel gets another


async def stop_tasks(*tasks: asyncio.Task[Any] | None, within: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any that
    is still running after ``RECANCEL_SECS`` (a swallowed cancellation, or cleanup that
    takes long: it is interrupted, as a second Ctrl-C would). Gives up after ``within``
    seconds with a warning, so a stuck task cannot hold a shutdown forever. Their
    results and exceptions are not raised."""
    pending = {t for t in tasks if t is not None and not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    first = True
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            log.warning("%d task(s) did not stop within %g s: %s", len(pending), within, pending)
            return
        for task in pending:
            if not first:
                log.warning("task %s went on after it was cancelled; cancelling it again", task)
            task.cancel()
        first = False
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECS, left))
    for stopped in tasks:
        if stopped is not None and stopped.done() and not stopped.cancelled():
            stopped.exception()  # retrieved: an error of a stopped task is not reported again
