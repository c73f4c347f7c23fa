"""Runs a consumer group: fetch a batch, hand it to the handler, commit, repeat.

Delivery is at-least-once: the batch is committed only after the handler returned, so a crash
in between delivers it again and handlers must be idempotent. A batch whose handler fails is
retried with backoff; if it keeps failing it is split, and a single record that still fails
``max_attempts`` times goes to ``<topic>.dead-letter`` (with the group and the error) so one
poison event cannot block its partition.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.core.eventlog import Delivered, EventLog, Record
from services.core.failpoints import failpoint
from services.core.metrics import Metrics
from services.core.priority import Priority

__all__ = ["Consumer", "Handler", "dead_letter_topic", "run_consumer"]

log = logging.getLogger("dockyard.consumer")

Handler = Callable[[Sequence[Delivered]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer group on a topic, and the function that applies its records."""

    topic: str
    group: str
    handler: Handler
    batch_size: int = 500
    max_attempts: int = 5


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dead-letter"


async def run_consumer(
    event_log: EventLog,
    consumer: Consumer,
    metrics: Metrics,
    *,
    backoff_seconds: float = 0.5,
    priority: Priority | None = None,
) -> None:
    """Consume until cancelled; with ``priority``, step aside while ingest is busy."""
    subscription = await event_log.subscribe(consumer.topic, consumer.group)
    group, topic = consumer.group, consumer.topic
    log.info("consumer started", extra={"group": group, "topic": consumer.topic})
    try:
        while True:
            size = consumer.batch_size
            if priority is not None:
                size = await priority.background_turn(size)
            batch = await subscription.fetch(size, timeout=5.0)
            if batch:
                started = time.perf_counter()
                await _apply(event_log, consumer, metrics, batch, backoff_seconds)
                failpoint(f"consumer.applied:{group}:{topic}")
                await subscription.commit(batch)
                metrics.handler_seconds.labels(group, topic).observe(time.perf_counter() - started)
                metrics.consumer_records.labels(group, topic).inc(len(batch))
            metrics.consumer_lag.labels(group, topic).set(await subscription.lag())
    finally:
        await subscription.close()


async def _apply(
    event_log: EventLog,
    consumer: Consumer,
    metrics: Metrics,
    batch: Sequence[Delivered],
    backoff: float,
) -> None:
    error = await _attempt(consumer, metrics, batch, backoff, consumer.max_attempts)
    if error is None:
        return
    if len(batch) > 1:
        # Find the poison record: apply one at a time, in order.
        for record in batch:
            await _apply(event_log, consumer, metrics, [record], backoff)
        return
    record = batch[0]
    log.error(
        "record moved to the dead-letter topic",
        extra={"group": consumer.group, "offset": record.offset, "error": repr(error)},
    )
    letter = {
        "group": consumer.group,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "error": repr(error),
        "value": base64.b64encode(record.value).decode(),
    }
    await event_log.append(
        dead_letter_topic(record.topic), [Record(record.key, json.dumps(letter).encode())]
    )
    metrics.consumer_dead_letters.labels(consumer.group, consumer.topic).inc()


async def _attempt(
    consumer: Consumer,
    metrics: Metrics,
    batch: Sequence[Delivered],
    backoff: float,
    attempts: int,
) -> Exception | None:
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            await consumer.handler(batch)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then isolated
            error = exc
            metrics.consumer_failures.labels(consumer.group, consumer.topic).inc()
            log.warning(
                "handler failed, retrying",
                extra={"group": consumer.group, "attempt": attempt + 1, "error": repr(exc),
                       "first_offset": batch[0].offset, "records": len(batch)},
            )
            await asyncio.sleep(min(backoff * 2**attempt, 30.0))
        else:
            return None
    return error
