"""Ingest first: background consumers step aside while the webhook is under a burst.

In the all-in-one process the webhook and the consumers share one event loop. The webhook must
absorb a burst (the registry retries, and holds undelivered events only in memory); the
consumers can catch up afterwards, since the log keeps everything. So while webhook requests
arrive faster than ``BUSY_AT`` per ``WINDOW_SECONDS``, a consumer waits before its next batch,
never longer than ``MAX_WAIT_SECONDS`` (it keeps making progress under sustained load), and
then takes a short batch so its turn stays short.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Priority"]

BUSY_AT = 8  # webhook requests begun within the window
WINDOW_SECONDS = 0.1
MAX_WAIT_SECONDS = 2.0
POLL_SECONDS = 0.01
BUSY_BATCH = 25


class Priority:
    def __init__(self, busy_at: int = BUSY_AT) -> None:
        self._busy_at = busy_at
        self._begun: deque[float] = deque(maxlen=busy_at)

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Marks a request that background work should not slow down."""
        self._begun.append(time.monotonic())
        yield

    def busy(self) -> bool:
        begun = self._begun
        return len(begun) == self._busy_at and time.monotonic() - begun[0] < WINDOW_SECONDS

    async def background_turn(self, batch_size: int) -> int:
        """Wait while the foreground is busy, at most ``MAX_WAIT_SECONDS``; returns how many
        records the turn may take."""
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        waited = False
        while self.busy() and time.monotonic() < deadline:
            waited = True
            await asyncio.sleep(POLL_SECONDS)
        return min(batch_size, BUSY_BATCH) if waited else batch_size
