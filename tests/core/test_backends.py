"""Backend selection: DOCKYARD_BUS / DOCKYARD_STORE and their settings, and the failures at start.

A wrong or unreachable backend must stop the start with the setting to fix named, and a secret
(the SASL password, a password in the MongoDB URI) must never appear in what is printed.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.config import Config, ConfigError, load_config
from services.core.eventlog.factory import open_event_log
from services.core.eventlog.kafka import KafkaEventLog
from services.core.stores import mongo_database
from services.transfer import export_stores, import_stores
from tests.support.dockyard import initialised, running_dockyard
from tests.support.mongo import SecantusServer, secantus_available
from tests.support.registry import free_port

SECRET = "0123456789abcdef-secret"
PASSWORD = "pw-Do-Not-Print-7f3a"  # the secret the tests look for in messages
DOCKYARD = Path(sys.executable).parent / "dockyard"


def config(tmp_path: Path, **env: str) -> Config:
    path = tmp_path / "dockyard.toml"
    path.write_text(f'[webhook]\nsecret = "{SECRET}"\n')
    return load_config(path, env=env)


def test_the_short_names_choose_the_backends(tmp_path: Path) -> None:
    chosen = config(tmp_path, DOCKYARD_BUS="kafka", DOCKYARD_KAFKA_BOOTSTRAP="k1:9092,k2:9092",
                    DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI="mongodb://m1,m2/?replicaSet=rs")
    assert (chosen.eventlog.backend, chosen.kafka.bootstrap) == ("kafka", "k1:9092,k2:9092")
    assert chosen.store.backend == "mongodb"
    assert chosen.mongodb.uri.get_secret_value() == "mongodb://m1,m2/?replicaSet=rs"
    defaults = config(tmp_path)
    assert (defaults.eventlog.backend, defaults.store.backend) == ("sqlite", "sqlite")


def test_the_toml_sections_choose_them_too_and_the_full_name_wins(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.toml"
    path.write_text(f'[webhook]\nsecret = "{SECRET}"\n[store]\nbackend = "mongodb"\n'
                    '[mongodb]\nuri = "mongodb://db.example/"\ndatabase = "dy"\n'
                    '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n')
    from_file = load_config(path, env={})
    assert (from_file.store.backend, from_file.mongodb.database) == ("mongodb", "dy")
    assert from_file.kafka.sasl_mechanism == "SCRAM-SHA-512"
    both = load_config(path, env={"DOCKYARD_BUS": "kafka", "DOCKYARD_EVENTLOG_BACKEND": "sqlite"})
    assert both.eventlog.backend == "sqlite"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DOCKYARD_BUS": "rabbitmq"}, "eventlog.backend (DOCKYARD_BUS): Input should be"),
        ({"DOCKYARD_STORE": "postgres"}, "store.backend (DOCKYARD_STORE): Input should be"),
        ({"DOCKYARD_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol:"),
        ({"DOCKYARD_MONGODB_TIMEOUT_SECONDS": "0"}, "mongodb.timeout_seconds:"),
    ],
)
def test_an_unknown_backend_value_is_refused_naming_the_setting(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: ") as refused:
        config(tmp_path, **env)
    assert named in str(refused.value)


def test_secrets_are_not_shown_in_the_configuration(tmp_path: Path) -> None:
    chosen = config(tmp_path, DOCKYARD_MONGODB_URI=f"mongodb://dy:{PASSWORD}@db/",
                    DOCKYARD_KAFKA_SASL_PASSWORD=PASSWORD)
    assert PASSWORD not in repr(chosen)
    assert PASSWORD not in str(chosen.model_dump())


async def test_an_unreachable_kafka_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    settings = config(tmp_path, DOCKYARD_BUS="kafka",
                      DOCKYARD_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
                      DOCKYARD_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                      DOCKYARD_KAFKA_SASL_USERNAME="dockyard",
                      DOCKYARD_KAFKA_SASL_PASSWORD=PASSWORD)
    with pytest.raises(ConfigError) as refused:
        async with open_event_log(settings):
            pytest.fail("opened a log on a closed port")
    message = str(refused.value)
    assert message.startswith("kafka.bootstrap (DOCKYARD_KAFKA_BOOTSTRAP): no Kafka broker")
    assert settings.kafka.bootstrap in message
    assert PASSWORD not in message


async def test_the_kafka_bus_opens_on_a_broker(tmp_path: Path, kafka_bootstrap: str) -> None:
    # Tansu 0.6 supports neither idempotent nor transactional producers (tests/support/kafka.py).
    settings = config(tmp_path, DOCKYARD_BUS="kafka", DOCKYARD_KAFKA_BOOTSTRAP=kafka_bootstrap,
                      DOCKYARD_KAFKA_TRANSACTIONS="false", DOCKYARD_KAFKA_IDEMPOTENCE="false")
    async with open_event_log(settings) as log:
        assert isinstance(log, KafkaEventLog)
        await log.ping()


async def test_a_refused_producer_names_the_settings_to_change(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    settings = config(tmp_path, DOCKYARD_BUS="kafka", DOCKYARD_KAFKA_BOOTSTRAP=kafka_bootstrap)
    with pytest.raises(ConfigError, match="DOCKYARD_KAFKA_TRANSACTIONS=false"):
        async with open_event_log(settings):
            pytest.fail("Tansu 0.6 accepted a transactional producer; update tests/support/kafka")


async def test_an_unreachable_mongodb_stops_the_start_naming_the_setting(
    tmp_path: Path,
) -> None:
    uri = f"mongodb://dockyard:{PASSWORD}@127.0.0.1:{free_port()}/"
    settings = config(tmp_path, DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI=uri,
                      DOCKYARD_MONGODB_TIMEOUT_SECONDS="0.3")
    with pytest.raises(ConfigError) as refused:
        async with mongo_database(settings):
            pytest.fail("opened a database on a closed port")
    message = str(refused.value)
    assert message.startswith("mongodb.uri (DOCKYARD_MONGODB_URI): no MongoDB server answered")
    assert "mongodb://dockyard:***@127.0.0.1:" in message
    assert PASSWORD not in message


async def test_a_standalone_mongod_is_refused_for_want_of_transactions(tmp_path: Path) -> None:
    if not secantus_available():
        pytest.skip("secantusdb is not installed: it plays the standalone mongod here")
    standalone = SecantusServer(standalone=True)
    await asyncio.to_thread(standalone.start)
    try:
        settings = config(tmp_path, DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI=standalone.uri)
        with pytest.raises(ConfigError, match="is a standalone mongod, which refuses transactions"):
            async with mongo_database(settings):
                pytest.fail("accepted a server without transactions")
    finally:
        await asyncio.to_thread(standalone.stop)


async def test_a_wrong_mongodb_password_is_refused_naming_the_setting(tmp_path: Path) -> None:
    if not secantus_available():
        pytest.skip("secantusdb is not installed: it plays the mongod that checks passwords")

    def provisioned() -> SecantusServer:
        storage = str(tmp_path / "secantus")
        with SecantusServer(storage=storage) as server:
            server.create_user("dockyard", "the-right-password")
        server = SecantusServer(storage=storage, auth=True)
        server.start()
        return server

    server = await asyncio.to_thread(provisioned)
    try:
        wrong = server.uri.replace("mongodb://", f"mongodb://dockyard:{PASSWORD}@")
        settings = config(tmp_path, DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI=wrong)
        with pytest.raises(ConfigError) as refused:
            async with mongo_database(settings):
                pytest.fail("signed in with a wrong password")
        message = str(refused.value)
        assert message.startswith("mongodb.uri (DOCKYARD_MONGODB_URI): MongoDB at mongodb://"
                                  "dockyard:***@")
        assert message.endswith("refused the user and password in the URI")
        assert PASSWORD not in message
        right = server.uri.replace("mongodb://", "mongodb://dockyard:the-right-password@")
        settings = config(tmp_path, DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI=right)
        async with mongo_database(settings) as database:
            await database.command("ping")
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("uri", ["http://db.example/", f"mongodb://u:{PASSWORD}@", "mongodb://"])
async def test_a_malformed_mongodb_uri_is_refused_naming_the_setting(
    tmp_path: Path, uri: str
) -> None:
    settings = config(tmp_path, DOCKYARD_STORE="mongodb", DOCKYARD_MONGODB_URI=uri)
    with pytest.raises(ConfigError) as refused:
        async with mongo_database(settings):
            pytest.fail(f"accepted {uri!r}")
    message = str(refused.value)
    assert message.startswith("mongodb.uri (DOCKYARD_MONGODB_URI): not a usable MongoDB URI")
    assert PASSWORD not in message


async def test_serve_with_an_unreachable_mongodb_exits_2_without_the_password(
    tmp_path: Path,
) -> None:
    settings = await asyncio.to_thread(initialised, tmp_path / "data", "http://127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env |= {"DOCKYARD_STORE": "mongodb", "DOCKYARD_MONGODB_TIMEOUT_SECONDS": "0.3",
            "DOCKYARD_MONGODB_URI": f"mongodb://dockyard:{PASSWORD}@127.0.0.1:{free_port()}/"}
    process = await asyncio.create_subprocess_exec(
        str(DOCKYARD), "serve", "--config", str(settings.server.data_dir / "dockyard.toml"),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, err.decode()
    assert out == b""
    assert "mongodb.uri (DOCKYARD_MONGODB_URI): no MongoDB server answered" in err.decode()
    assert PASSWORD not in err.decode()


async def test_dockyard_runs_on_mongodb_with_the_accounts_it_imported(
    tmp_path: Path, mongo_uri: str, mongo_database_name: str
) -> None:
    data_dir = tmp_path / "data"
    # init makes the admin in the embedded store; the documented move brings it to MongoDB.
    embedded = await asyncio.to_thread(initialised, data_dir, "http://127.0.0.1:9")
    dump = io.StringIO()
    await export_stores(embedded, dump, ["auth"])
    for name in ("auth.db", "catalog.db", "activity.db"):
        (data_dir / name).unlink(missing_ok=True)
    settings = await asyncio.to_thread(
        initialised, data_dir, "http://127.0.0.1:9",
        store_backend="mongodb", mongodb_uri=mongo_uri, mongodb_database=mongo_database_name)
    assert settings.store.backend == "mongodb"
    dump.seek(0)
    await import_stores(settings, dump)
    async with running_dockyard(settings) as dockyard:
        health = (await dockyard.client.get("/api/v1/health")).json()
        checks = {name: check["ok"] for name, check in health["checks"].items()}
        assert checks["auth-store"]
        assert checks["catalog-store"]
        assert checks["activity-store"]
        me = await dockyard.client.get("/api/v1/me")  # signed in as the imported admin
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "admin"
    # Nothing of these stores went back to SQLite files in the data directory.
    assert not {"auth.db", "catalog.db", "activity.db"} & {p.name for p in data_dir.iterdir()}
