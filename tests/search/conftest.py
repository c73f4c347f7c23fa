"""The search index under test, once per backend: every contract test runs against each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from services.search.adapters.sqlite import SqliteSearchIndex
from services.search.ports import SearchIndex
from tests.support.mongo import own_database


@pytest.fixture(params=["sqlite", "mongodb"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SearchIndex]:
    async with AsyncExitStack() as stack:
        store: SearchIndex
        if request.param == "mongodb":
            from services.search.adapters.mongo import MongoSearchIndex  # noqa: PLC0415

            store = MongoSearchIndex(await stack.enter_async_context(own_database(request)))
        else:
            store = SqliteSearchIndex(tmp_path / "search.db")
        await store.open()
        stack.push_async_callback(store.close)
        yield store
