"""The hot paths' read cache: answers reused for a while, dropped on every identity change."""

from __future__ import annotations

import asyncio

from services.auth.cache import ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        return self.calls


async def test_an_answer_is_reused_until_it_expires() -> None:
    clock, load = Clock(), Loader()
    cache = ReadCache(5, clock)
    assert [await cache.get("k", load) for _ in range(3)] == [1, 1, 1]
    clock.now += 5.01
    assert await cache.get("k", load) == 2
    assert await cache.get("other", load) == 3


async def test_invalidate_drops_every_answer() -> None:
    load = Loader()
    cache = ReadCache(60, Clock())
    await cache.get("a", load)
    await cache.get("b", load)
    cache.invalidate()
    assert (await cache.get("a", load), await cache.get("b", load)) == (3, 4)


async def test_an_answer_loaded_across_an_invalidation_is_not_kept() -> None:
    """A read that started before a change may hold the old state: use it once, keep it not."""
    cache = ReadCache(60, Clock())
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "before the change"

    pending = asyncio.create_task(cache.get("k", slow))
    await started.wait()
    cache.invalidate()
    release.set()
    assert await pending == "before the change"
    assert await cache.get("k", Loader()) == 1


async def test_a_zero_ttl_never_caches() -> None:
    load = Loader()
    cache = ReadCache(0, Clock())
    assert [await cache.get("k", load) for _ in range(3)] == [1, 2, 3]
