"""The event-log contract: every adapter of services.core.eventlog.EventLog passes this suite.

Adapters are listed in the ``event_log_factory`` fixture; the Kafka adapter joins it in the
scale-out issue. Each test gets fresh topic and group names so adapters backed by a shared
broker need no cleanup.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.core.eventlog import EventLog, Record
from services.core.eventlog.kafka import KafkaEventLog
from services.core.eventlog.sqlite import MIGRATIONS, SqliteEventLog
from tests.support.kafka import TANSU_EVENT_LOG_OPTIONS

Factory = Callable[[], Awaitable[EventLog]]


@pytest.fixture(params=["sqlite", "kafka"])
async def event_log_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Factory]:
    opened: list[EventLog] = []

    async def make() -> EventLog:
        log: SqliteEventLog | KafkaEventLog
        if request.param == "kafka":
            log = KafkaEventLog(
                request.getfixturevalue("kafka_bootstrap"), **TANSU_EVENT_LOG_OPTIONS
            )
        else:
            log = SqliteEventLog(tmp_path / "events.db")
        await log.open()
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.close()


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def records(n: int, key: str = "team/app", start: int = 0) -> list[Record]:
    return [Record(key, f"v{i}".encode()) for i in range(start, start + n)]


async def drain(log: EventLog, topic: str, group: str, *, commit: bool) -> list[bytes]:
    sub = await log.subscribe(topic, group)
    got = []
    try:
        while batch := await sub.fetch(max_records=7, timeout=0.3):
            got.extend(r.value for r in batch)
            if commit:
                await sub.commit(batch)
    finally:
        await sub.close()
    return got


async def test_appended_records_arrive_in_order(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    await log.append(topic, records(5))
    await log.append(topic, records(5, start=5))
    assert await drain(log, topic, "g", commit=True) == [f"v{i}".encode() for i in range(10)]


async def test_delivered_records_carry_key_and_increasing_offsets(
    event_log_factory: Factory, topic: str
) -> None:
    log = await event_log_factory()
    await log.append(topic, [Record("a/x", b"1"), Record("a/x", b"2")])
    sub = await log.subscribe(topic, "g")
    batch = await sub.fetch(timeout=1)
    assert [(r.key, r.value) for r in batch] == [("a/x", b"1"), ("a/x", b"2")]
    assert {r.topic for r in batch} == {topic}
    assert batch[0].offset < batch[1].offset
    await sub.close()


async def test_empty_append_is_a_no_op(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    await log.append(topic, [])
    assert await drain(log, topic, "g", commit=True) == []


async def test_a_failing_batch_appends_nothing(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    broken = [*records(2), Record("team/app", object()), *records(2, start=2)]  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017, PT011 - each adapter raises its own error type
        await log.append(topic, broken)
    await log.append(topic, records(1, start=9))
    assert await drain(log, topic, "g", commit=True) == [b"v9"]


async def test_a_failing_batch_among_concurrent_appends_fails_alone(
    event_log_factory: Factory, topic: str
) -> None:
    # The SQLite log commits concurrent appends together: one broken batch must not take the
    # others with it, nor leave a gap in the offsets after it.
    log = await event_log_factory()
    broken = [*records(1, start=5), Record("team/app", object())]  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        log.append(topic, records(2)), log.append(topic, broken),
        log.append(topic, records(2, start=2)), return_exceptions=True,
    )
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], Exception)
    await log.append(topic, records(1, start=9))
    assert sorted(await drain(log, topic, "g", commit=True)) == [b"v0", b"v1", b"v2", b"v3",
                                                                 b"v9"]


async def test_committed_records_are_not_delivered_again(
    event_log_factory: Factory, topic: str
) -> None:
    log = await event_log_factory()
    await log.append(topic, records(10))
    assert len(await drain(log, topic, "g", commit=True)) == 10
    await log.append(topic, records(1, start=10))
    assert await drain(log, topic, "g", commit=True) == [b"v10"]


async def test_uncommitted_records_are_delivered_again(
    event_log_factory: Factory, topic: str
) -> None:
    log = await event_log_factory()
    await log.append(topic, records(4))
    sub = await log.subscribe(topic, "g")
    first = await sub.fetch(max_records=2, timeout=1)
    await sub.commit(first)
    await sub.fetch(max_records=2, timeout=1)  # delivered, never committed: a crash here
    await sub.close()
    assert await drain(log, topic, "g", commit=True) == [b"v2", b"v3"]


async def test_each_group_sees_every_record(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    await log.append(topic, records(3))
    assert await drain(log, topic, "catalog", commit=True) == [b"v0", b"v1", b"v2"]
    assert await drain(log, topic, "activity", commit=True) == [b"v0", b"v1", b"v2"]


async def test_topics_are_separate(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    await log.append(topic, records(1))
    await log.append(topic + "-other", records(1, start=1))
    assert await drain(log, topic, "g", commit=True) == [b"v0"]


async def test_fetch_respects_max_records(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    await log.append(topic, records(10))
    sub = await log.subscribe(topic, "g")
    assert len(await sub.fetch(max_records=3, timeout=1)) <= 3
    await sub.close()


async def test_fetch_returns_empty_at_timeout(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    sub = await log.subscribe(topic, "g")
    assert await sub.fetch(timeout=0.2) == []
    await sub.close()


async def test_a_waiting_fetch_is_woken_by_append(event_log_factory: Factory, topic: str) -> None:
    log = await event_log_factory()
    sub = await log.subscribe(topic, "g")
    waiting = asyncio.create_task(sub.fetch(timeout=30))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await log.append(topic, records(1))
    batch = await asyncio.wait_for(waiting, 10)
    assert [r.value for r in batch] == [b"v0"]
    await sub.close()


async def test_order_per_key_holds_across_many_appends(
    event_log_factory: Factory, topic: str
) -> None:
    log = await event_log_factory()
    keys = ["a/one", "b/two", "c/three"]
    for i, key in zip(range(60), itertools.cycle(keys), strict=False):
        await log.append(topic, [Record(key, f"{key}:{i}".encode())])
    got = await drain(log, topic, "g", commit=True)
    for key in keys:
        mine = [int(v.decode().split(":")[1]) for v in got if v.decode().startswith(key)]
        assert mine == sorted(mine)
        assert len(mine) == 20


async def test_lag_counts_what_the_group_has_not_committed(
    event_log_factory: Factory, topic: str
) -> None:
    log = await event_log_factory()
    await log.append(topic, records(5))
    sub = await log.subscribe(topic, "g")
    assert await sub.lag() == 5
    batch = await sub.fetch(max_records=2, timeout=1)
    await sub.commit(batch)
    assert await sub.lag() == 5 - len(batch)
    await sub.close()


async def test_records_and_offsets_survive_reopening(tmp_path: Path) -> None:
    first = SqliteEventLog(tmp_path / "events.db")
    await first.open()
    await first.append("t", records(3))
    sub = await first.subscribe("t", "g")
    await sub.commit(await sub.fetch(max_records=1, timeout=1))
    await first.close()

    second = SqliteEventLog(tmp_path / "events.db")
    await second.open()
    assert await drain(second, "t", "g", commit=True) == [b"v1", b"v2"]
    await second.close()


async def test_a_log_from_before_the_rowid_migration_keeps_records_and_positions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A file written with the first schema (records WITHOUT ROWID) upgrades in place, and
    the upgrade is logged (it copies the table)."""
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(f"{MIGRATIONS[0]}\nPRAGMA user_version = 1;")
        conn.executemany(
            "INSERT INTO records (topic, offset, key, value, appended_at) VALUES (?, ?, ?, ?, 0)",
            [("t", offset, "team/app", f"v{offset}".encode()) for offset in (3, 1, 2)],
        )
        conn.execute("INSERT INTO group_offsets (topic, grp, committed) VALUES ('t', 'g', 1)")
    conn.close()

    log = SqliteEventLog(path)
    with caplog.at_level("INFO", logger="dockyard.sqlite"):
        await log.open()
    await log.append("t", [Record("team/app", b"v4")])
    sub = await log.subscribe("t", "g")
    delivered = await sub.fetch(timeout=1)
    await sub.close()
    await log.close()

    assert [(r.offset, r.value) for r in delivered] == [(2, b"v2"), (3, b"v3"), (4, b"v4")]
    assert [(r.message, r.to_version) for r in caplog.records] == [("migrating schema", 2)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert "WITHOUT ROWID" not in conn.execute(
            "SELECT sql FROM sqlite_schema WHERE name = 'records'").fetchone()[0]
    conn.close()


async def test_sqlite_notices_appends_from_another_process(tmp_path: Path) -> None:
    consumer_side = SqliteEventLog(tmp_path / "events.db")
    writer_side = SqliteEventLog(tmp_path / "events.db")  # stands for `dockyard sync`
    await consumer_side.open()
    await writer_side.open()
    sub = await consumer_side.subscribe("t", "g")
    waiting = asyncio.create_task(sub.fetch(timeout=30))
    await asyncio.sleep(0.1)
    await writer_side.append("t", records(1))
    assert [r.value for r in await asyncio.wait_for(waiting, 10)] == [b"v0"]
    await sub.close()
    await writer_side.close()
    await consumer_side.close()


async def test_sqlite_prune_keeps_what_a_group_still_needs(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    await log.open()
    await log.append("t", records(4))
    fast = await log.subscribe("t", "fast")
    await fast.commit(await fast.fetch(timeout=1))
    slow = await log.subscribe("t", "slow")
    await slow.commit(await slow.fetch(max_records=1, timeout=1))
    await slow.close()

    assert await log.prune(older_than_seconds=3600) == 0  # too young
    assert await log.prune(older_than_seconds=0) == 1  # only what both groups committed
    assert await drain(log, "t", "slow", commit=False) == [b"v1", b"v2", b"v3"]
    await fast.close()
    await log.close()


async def test_sqlite_refuses_a_second_subscription_of_one_group(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    await log.open()
    sub = await log.subscribe("t", "g")
    with pytest.raises(RuntimeError, match="one subscription per group"):
        await log.subscribe("t", "g")
    await sub.close()
    await log.close()


async def test_sqlite_prune_never_lets_offsets_restart(tmp_path: Path) -> None:
    """An emptied topic would number new records from 1 again, below every committed offset,
    and they would never be delivered; prune keeps the newest record so that cannot happen."""
    log = SqliteEventLog(tmp_path / "events.db")
    await log.open()
    await log.append("t", records(2))
    sub = await log.subscribe("t", "g")
    await sub.commit(await sub.fetch(timeout=1))
    await sub.close()
    await log.prune(older_than_seconds=0)
    await log.append("t", records(1, start=2))
    sub = await log.subscribe("t", "g")
    assert await sub.lag() == 1
    assert [r.value for r in await sub.fetch(timeout=1)] == [b"v2"]
    await sub.close()
    await log.close()
