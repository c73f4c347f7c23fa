"""services.core.consume.run_consumer: commit after success, retry, isolate a poison record."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from services.core.consume import Consumer, dead_letter_topic, run_consumer
from services.core.eventlog import Delivered, Record
from services.core.eventlog.sqlite import SqliteEventLog
from services.core.metrics import Metrics
from tests.support.waiting import eventually


@pytest.fixture
async def event_log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / "events.db", synchronous="NORMAL")
    await log.open()
    yield log
    await log.close()


METRICS = Metrics()


async def consume(event_log: SqliteEventLog, consumer: Consumer) -> asyncio.Task[None]:
    return asyncio.create_task(run_consumer(event_log, consumer, METRICS, backoff_seconds=0.01))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def lag(event_log: SqliteEventLog, group: str) -> float | None:
    """The lag the running consumer reports in /metrics."""
    labels = {"group": group, "topic": "t"}
    return METRICS.registry.get_sample_value("dockyard_consumer_lag", labels)


async def test_records_are_handled_in_order_and_committed(event_log: SqliteEventLog) -> None:
    seen: list[bytes] = []

    async def handler(batch: Sequence[Delivered]) -> None:
        seen.extend(r.value for r in batch)

    task = await consume(event_log, Consumer("t", "g-order", handler))
    await event_log.append("t", [Record("k", b"1"), Record("k", b"2")])
    await event_log.append("t", [Record("k", b"3")])
    await eventually(lambda: asyncio.sleep(0, seen), lambda s: len(s) == 3)
    await eventually(lambda: lag(event_log, "g-order"), lambda n: n == 0)
    await stop(task)
    assert seen == [b"1", b"2", b"3"]


async def test_a_failing_batch_is_retried_until_it_succeeds(event_log: SqliteEventLog) -> None:
    attempts = 0

    async def flaky(batch: Sequence[Delivered]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("registry down")

    task = await consume(event_log, Consumer("t", "g-flaky", flaky))
    await event_log.append("t", [Record("k", b"1")])
    await eventually(lambda: lag(event_log, "g-flaky"), lambda n: n == 0)
    await stop(task)
    assert attempts == 3


async def test_a_poison_record_goes_to_the_dead_letter_topic_and_the_rest_proceed(
    event_log: SqliteEventLog,
) -> None:
    applied: list[bytes] = []

    async def handler(batch: Sequence[Delivered]) -> None:
        if any(r.value == b"poison" for r in batch):
            raise ValueError("cannot parse")
        applied.extend(r.value for r in batch)

    task = await consume(event_log, Consumer("t", "g", handler, max_attempts=2))
    await event_log.append("t", [Record("k", b"1"), Record("k", b"poison"), Record("k", b"3")])
    await eventually(lambda: asyncio.sleep(0, applied), lambda a: len(a) == 2)
    await eventually(lambda: lag(event_log, "g"), lambda n: n == 0)
    await stop(task)
    assert applied == [b"1", b"3"]

    letters = await event_log.subscribe(dead_letter_topic("t"), "inspect")
    (letter,) = await letters.fetch(timeout=1)
    await letters.close()
    body = json.loads(letter.value)
    assert (body["group"], body["offset"]) == ("g", 2)
    assert "cannot parse" in body["error"]
    assert base64.b64decode(body["value"]) == b"poison"
