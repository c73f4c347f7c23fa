"""Consumer processes on the Kafka path die; nothing is lost and nothing is applied twice.

Real processes throughout, on each pair of peers of tests/scaleout/conftest.py (Tansu and
SecantusDB here; Apache Kafka and mongod where a Docker engine exists): one
`dockyard serve --service ingest-api` taking the webhook and serving the API, and
`--service ingest-consumers` processes running the catalog and activity groups. A sender keeps
posting tag deletes (each becomes exactly one activity, and the catalog records each applied
event id) while consumer processes are killed with SIGKILL.

"Mid-batch" is made certain, not hoped for: the first test arms the failpoint between applying a
batch and committing it (services/core/failpoints.py), so the consumer process is SIGKILLed
exactly there; the test then checks from outside that more is applied (activities in the store)
than committed (the group's offsets on the broker), so those records are certainly delivered
again to its successor. The broker restart is tests/core/test_eventlog_kafka.py.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core.config import Config
from services.core.failpoints import ENVIRONMENT_VARIABLE as FAILPOINT
from services.ingest.consumers import REGISTRY_EVENTS
from tests.scaleout.conftest import ScaleOut, add_admin
from tests.support.dockyard import admin_auth, initialised
from tests.support.pipeline import EventSender, applied_ids, committed
from tests.support.serve import ServeProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

SEED = 4_2026
SETTLE_SECONDS = 90.0  # rejoins on Tansu take seconds each; catching up after the last kill
# 100 events/s: enough that kills land mid-stream, few enough that the consumers (SecantusDB is
# a Python server) catch up in seconds; a faster sender only lengthens the catching up.
PAUSE = 0.1


@pytest.fixture
def config(tmp_path: Path, scaleout: ScaleOut) -> Config:
    # Nothing listens at the registry URL: tag deletes never ask the registry anything.
    config = initialised(tmp_path / "data", "http://127.0.0.1:9")
    add_admin(config.server.data_dir / "dockyard.toml", scaleout.env)
    return config


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


def serve(config: Config, tmp_path: Path, env: dict[str, str], service: str,
          name: str) -> ServeProcess:
    return ServeProcess(config.server.data_dir / "dockyard.toml", tmp_path / f"{name}.log",
                        services=[service], env=env)


async def start(processes: list[ServeProcess], process: ServeProcess) -> ServeProcess:
    processes.append(process)
    process.start()
    await process.ready()
    return process


def handled(metrics: str, group: str) -> float:
    found = re.search(
        rf'^dockyard_consumer_records_total{{group="{group}",topic="{REGISTRY_EVENTS}"}} (\S+)$',
        metrics, re.MULTILINE)
    return 0.0 if found is None else float(found[1])


async def settled(client: httpx.AsyncClient, api: ServeProcess, sent: list[str],
                  logs: str) -> list[str]:
    return await eventually(lambda: applied_ids(client, api.url),
                            lambda ids: len(ids) >= len(sent), timeout=SETTLE_SECONDS,
                            what=f"{len(sent)} activities\n{logs}")


async def test_a_consumer_process_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
    tmp_path: Path, config: Config, scaleout: ScaleOut, processes: list[ServeProcess],
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a repeatable schedule, not a secret
    # The Kafka consumer's kill-and-restart is what is tested; the stores are the embedded ones,
    # shared by the processes: SecantusDB (a Python server) would only slow the catching up.
    env = scaleout.env | {"DOCKYARD_STORE": "sqlite"}
    api = await start(processes, serve(config, tmp_path, env, "ingest-api", "api"))
    # The worker SIGKILLs itself after applying its N-th activity batch, before committing it.
    armed = env | {FAILPOINT: f"consumer.applied:activity:{REGISTRY_EVENTS}@{rng.randint(5, 15)}"}
    worker = await start(processes, serve(config, tmp_path, armed, "ingest-consumers", "worker"))
    sender = EventSender(api.url, config.webhook.secret, pause=PAUSE)
    stop = asyncio.Event()
    streaming = asyncio.create_task(sender.stream(stop))
    async with httpx.AsyncClient(headers={"Authorization": admin_auth()}, timeout=30) as client:
        try:
            status = await worker.exited(timeout=60)
            assert status == -signal.SIGKILL, worker.log_tail()
            applied = len(set(await applied_ids(client, api.url)))
            done = sum((await committed(scaleout.bootstrap, "activity", REGISTRY_EVENTS)).values())
            # Records (done, applied] were applied and will certainly be delivered again.
            assert applied > done, (applied, done)
            del worker.env[FAILPOINT]
            worker.start()
            await worker.ready()
            # Once the restarted process applies again, kill it once more at a random moment.
            await eventually(lambda: applied_ids(client, api.url),
                             lambda ids: len(set(ids)) > applied, timeout=SETTLE_SECONDS,
                             what=f"the restarted consumer applying\n{worker.log_tail()}")
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            worker.kill()
            worker.start()
            await worker.ready()
        finally:
            stop.set()
            await streaming

        ids = await settled(client, api, sender.sent, worker.log_tail())
        assert len(ids) == len(set(ids)), "an event was applied twice"
        assert set(ids) == set(sender.sent), "an event was lost"
        for group in ("activity", "catalog"):
            final = await eventually(
                lambda g=group: committed(scaleout.bootstrap, g, REGISTRY_EVENTS),
                lambda o: sum(o.values()) == len(sender.sent), timeout=SETTLE_SECONDS,
                what=f"group {group} committed every record")
            assert sum(final.values()) == len(sender.sent)
    assert worker.stop() == 0, worker.log_tail()


async def test_two_consumer_processes_in_one_group_one_dies_the_other_takes_over(
    tmp_path: Path, config: Config, scaleout: ScaleOut, processes: list[ServeProcess],
) -> None:
    api = await start(processes, serve(config, tmp_path, scaleout.env, "ingest-api", "api"))
    first = await start(processes,
                        serve(config, tmp_path, scaleout.env, "ingest-consumers", "first"))
    second = await start(processes,
                         serve(config, tmp_path, scaleout.env, "ingest-consumers", "second"))
    sender = EventSender(api.url, config.webhook.secret, pause=PAUSE)
    async with httpx.AsyncClient(headers={"Authorization": admin_auth()}, timeout=30) as client:
        async def both_working() -> tuple[float, float]:
            await sender.send(5)
            texts = [(await client.get(f"{p.url}/metrics")).text for p in (first, second)]
            return handled(texts[0], "activity"), handled(texts[1], "activity")

        # Both processes hold partitions of the activity group and apply records.
        await eventually(both_working, lambda counts: min(counts) > 0, timeout=90,
                         what=f"both consumers applying\n{first.log_tail()}\n{second.log_tail()}")

        stop = asyncio.Event()
        streaming = asyncio.create_task(sender.stream(stop))
        try:
            await asyncio.sleep(1.5)
            first.kill()
            # The survivor gets the dead member's partitions once its session times out.
            await asyncio.sleep(3.0)
        finally:
            stop.set()
            await streaming
        before = handled((await client.get(f"{second.url}/metrics")).text, "activity")

        ids = await settled(client, api, sender.sent, second.log_tail())
        assert len(ids) == len(set(ids)), "an event was applied twice"
        assert set(ids) == set(sender.sent), "an event was lost"
        # Every repository (so every partition, the dead process's too) was applied by the
        # survivor after the kill.
        after = handled((await client.get(f"{second.url}/metrics")).text, "activity")
        assert after > before
        offsets = await committed(scaleout.bootstrap, "activity", REGISTRY_EVENTS)
        assert sum(offsets.values()) == len(sender.sent)
    assert second.stop() == 0, second.log_tail()
