"""The vulnerability database's stores: every test taking ``store`` runs on each adapter.

The MongoDB adapter runs against SecantusDB (tests/support/mongo.py), each test in a database
of its own.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from services.scanner.vulndb.adapters.mongo import MongoVulnStore
from services.scanner.vulndb.adapters.sqlite import SqliteVulnStore
from services.scanner.vulndb.ports import VulnStore
from tests.support.mongo import own_database

TESTDATA = Path(__file__).parent / "testdata"


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VulnStore]:
    async with AsyncExitStack() as stack:
        opened: SqliteVulnStore | MongoVulnStore
        if request.param == "mongodb":
            opened = MongoVulnStore(await stack.enter_async_context(own_database(request)))
        else:
            opened = SqliteVulnStore(tmp_path / "vulndb.db")
        await opened.open()
        stack.push_async_callback(opened.close)
        yield opened
