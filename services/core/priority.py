"""Ingest first: background consumers step aside while the webhook is under a burst.

In the all-in-one process the webhook and the consumers share one event loop. The webhook must
absorb a burst (the registry retries, and holds undelivered events only in memory); the
consumers can catch up afterwards, since the log keeps everything. So a consumer waits before
its next batch while many webhook requests are in flight, but never longer than
``MAX_WAIT_SECONDS``, so it keeps making progress under sustained load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Priority"]

BUSY_AT = 4  # webhook requests in flight
MAX_WAIT_SECONDS = 1.0
POLL_SECONDS = 0.005
# A consumer that had to wait takes at most this many records, so its turn stays short.
BUSY_BATCH = 50


class Priority:
    def __init__(self, busy_at: int = BUSY_AT) -> None:
        self._busy_at = busy_at
        self._in_flight = 0

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Marks a request that background work should not slow down."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def background_turn(self, batch_size: int) -> int:
        """Wait until the foreground is quiet, or ``MAX_WAIT_SECONDS`` have passed; returns
        how many records the turn may take."""
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        waited = False
        while self._in_flight >= self._busy_at and time.monotonic() < deadline:
            waited = True
            await asyncio.sleep(POLL_SECONDS)
        return min(batch_size, BUSY_BATCH) if waited else batch_size
