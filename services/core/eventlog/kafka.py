"""The scale-out event log: Kafka through aiokafka, one consumer group per Dockyard consumer.

Appends use ``acks="all"`` and the record key as the partition key, so records of one repository
keep their order. How atomic an append is depends on what the broker supports:

- ``transactions=True`` (Apache Kafka): each append is one Kafka transaction (KIP-98) and
  consumers read with ``isolation_level="read_committed"``, so a batch is all visible or not at
  all, across partitions. The transactional id is unique per ``KafkaEventLog`` instance.
- ``transactions=False``: the whole batch is validated before anything is sent, so a malformed
  batch appends nothing; but a broker failure in the middle of a batch can leave the partitions
  that were acknowledged written and the others not. The caller sees the error and retries (the
  webhook answers 5xx), so nothing is lost; records already written are then delivered twice,
  which idempotent consumers absorb.

``idempotence=True`` makes the broker drop a producer's retried duplicates (KIP-98); brokers whose
``InitProducerId`` fails for aiokafka's request version need ``idempotence=False`` (plain retries,
at-least-once). ``open`` fails with a message naming the setting if the broker refuses either.

A Dockyard consumer group reads one topic; the same group name on several topics (the activity
consumer reads registry, scan and identity events) is one Kafka group per topic, named by
``kafka_group_id``. Members of one Kafka group rebalance together, so sharing a Kafka group
would make a join on one topic stop the consumption of the others.

Offsets are committed only by ``commit`` (after the handler succeeded). A rebalance therefore loses
nothing: records fetched but not committed are delivered again to the partition's next owner.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from services.core.eventlog.ports import Delivered, Record

__all__ = ["KafkaEventLog", "KafkaSubscription", "kafka_group_id"]

log = logging.getLogger("dockyard.eventlog")

# A subscription is usable once the group has assigned it partitions; past this, subscribe fails.
ASSIGNMENT_TIMEOUT_SECONDS = 60.0


def kafka_group_id(group: str, topic: str) -> str:
    """The Kafka consumer group of Dockyard's consumer ``group`` on ``topic``."""
    return f"{group}.{topic}"


class KafkaEventLog:
    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 3,
        replication: int = 1,
        client_id: str = "dockyard",
        transactions: bool = True,
        idempotence: bool = True,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        connection: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        # Security settings every client gets: security_protocol, sasl_*, ssl_context.
        self._connection = dict(connection or {})
        self._partitions = partitions
        self._replication = replication
        self._client_id = client_id
        self._transactions = transactions
        self._idempotence = idempotence or transactions
        self._group_timings = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()
        # A transactional producer runs one transaction at a time.
        self._append_lock = asyncio.Lock()

    async def open(self) -> None:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, **self._connection
        )
        await self._admin.start()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._idempotence,
            transactional_id=(
                f"{self._client_id}-{uuid.uuid4().hex}" if self._transactions else None
            ),
            **self._connection,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self.close()
            raise RuntimeError(
                f"the Kafka broker at {self._bootstrap} refused the producer ({exc!r});"
                " if it does not support idempotent or transactional producers, set"
                " DOCKYARD_KAFKA_TRANSACTIONS=false (and DOCKYARD_KAFKA_IDEMPOTENCE=false)"
            ) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def ping(self) -> None:
        await self._opened_admin().list_topics()

    async def append(self, topic: str, records: Sequence[Record]) -> None:
        if not records:
            return
        for record in records:
            if not isinstance(record.key, str) or not isinstance(record.value, bytes):
                raise TypeError(f"a record needs a str key and bytes value, got {record!r}")
        await self._ensure_topic(topic)
        producer = self._opened_producer()
        async with self._append_lock:
            if self._transactions:
                async with producer.transaction():
                    await self._send_all(producer, topic, records)
            else:
                await self._send_all(producer, topic, records)

    async def subscribe(self, topic: str, group: str) -> KafkaSubscription:
        await self._ensure_topic(topic)
        listener = _Assignment()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=kafka_group_id(group, topic),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if self._transactions else "read_uncommitted",
            **self._group_timings,
            **self._connection,
        )
        await consumer.start()
        consumer.subscribe([topic], listener=listener)
        try:
            await asyncio.wait_for(listener.assigned.wait(), ASSIGNMENT_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.CancelledError):
            # Also when the process stops before the group assigned anything (a join takes
            # seconds): the consumer leaves the group instead of lingering as a member.
            await consumer.stop()
            raise
        return KafkaSubscription(consumer, topic, group)

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, topic: str, records: Sequence[Record]) -> None:
        sent = [
            await producer.send(topic, record.value, key=record.key.encode()) for record in records
        ]
        await asyncio.gather(*sent)

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        async with self._topics_lock:
            if topic in self._known_topics:
                return
            admin = self._opened_admin()
            if topic not in await admin.list_topics():
                try:
                    await admin.create_topics(
                        [NewTopic(topic, self._partitions, self._replication)]
                    )
                except TopicAlreadyExistsError:
                    pass  # another process created it first
                else:
                    log.info("created topic", extra={"topic": topic})
            self._known_topics.add(topic)

    def _opened_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaEventLog.open() was not called")
        return self._producer

    def _opened_admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise RuntimeError("KafkaEventLog.open() was not called")
        return self._admin


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells ``subscribe`` when the group has assigned partitions.

    Nothing needs saving on revoke: offsets are committed only after the handler succeeded, and
    whatever was fetched but not committed goes again to the partition's next owner.
    """

    def __init__(self) -> None:
        self.assigned = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(map(str, revoked))})

    async def on_partitions_assigned(self, _assigned: set[TopicPartition]) -> None:
        self.assigned.set()


class KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._consumer = consumer

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivered]:
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records
        )
        return [
            Delivered(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key.decode() if message.key is not None else "",
                value=message.value if message.value is not None else b"",
                appended_at=message.timestamp / 1000,
            )
            for partition in sorted(batches, key=lambda tp: tp.partition)
            for message in batches[partition]
        ]

    async def commit(self, records: Sequence[Delivered]) -> None:
        highest: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            highest[tp] = max(highest.get(tp, -1), record.offset)
        if not highest:
            return
        try:
            await self._consumer.commit({tp: offset + 1 for tp, offset in highest.items()})
        except CommitFailedError:
            # The group rebalanced while the batch was handled: the partition's new owner gets
            # these records again (at-least-once), and handlers are idempotent.
            log.warning(
                "commit lost to a rebalance; records will be delivered again",
                extra={"group": self.group, "topic": self.topic},
            )

    async def lag(self) -> int:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return 0
        ends = await self._consumer.end_offsets(assigned)
        starts = await self._consumer.beginning_offsets(assigned)
        total = 0
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            total += max(0, ends[tp] - (starts[tp] if committed is None else committed))
        return total

    async def close(self) -> None:
        await self._consumer.stop()
