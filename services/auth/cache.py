"""Recent identity reads of the hot paths, kept briefly and dropped on every identity change.

The token endpoint reads the account (or the application token, by its hash) and the asking
account's namespace records on every request, and the read APIs read an account's namespaces
on every call; these change rarely. ``ReadCache`` keeps each answer for ``ttl`` seconds.

Every identity change made by this process goes through the audit log, which calls
``invalidate()`` before it publishes the change; failed-login counts invalidate too, so
lockouts apply at once. A change through this process's API (revoking a token, disabling a
user, changing a membership or a visibility) thus takes effect on its next request. A change
made by another process (the CLI, another auth replica) takes effect within ``ttl`` seconds;
``[auth] identity_cache_seconds = 0`` turns caching off.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["ReadCache"]

T = TypeVar("T")

# An upper bound on entries: far above one process's working set (each account's namespace
# sets asked together, plus live tokens), low enough that a flood of new keys costs little.
MAX_ENTRIES = 50_000


class ReadCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._generation = 0
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The cached answer for ``key``, or ``load()``'s, remembered unless an invalidation
        happened while it was loading (it may predate the change)."""
        if self._ttl <= 0:
            return await load()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            value: T = entry[1]
            return value
        generation = self._generation
        value = await load()
        if generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self._ttl, value)
        return value
