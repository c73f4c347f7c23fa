"""Opens the event log the configuration chooses: ``[eventlog] backend`` (``DOCKYARD_BUS``).

``sqlite`` (the default) is the file ``[eventlog] path``; ``kafka`` is the brokers at
``[kafka] bootstrap`` with the ``[kafka]`` security settings. A backend that cannot be used stops
the start with a ``ConfigError`` naming the setting to fix; the SASL password never appears in
it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from services.core.config import Config, ConfigError, KafkaConfig
from services.core.eventlog.ports import EventLog
from services.core.eventlog.sqlite import SqliteEventLog

if TYPE_CHECKING:
    from services.core.eventlog.kafka import KafkaEventLog

__all__ = ["kafka_connection", "open_event_log"]


@asynccontextmanager
async def open_event_log(config: Config) -> AsyncIterator[EventLog]:
    log: SqliteEventLog | KafkaEventLog
    if config.eventlog.backend == "kafka":
        log = _kafka(config.kafka)
        await _open_kafka(log, config.kafka)
    else:
        log = SqliteEventLog(config.path(config.eventlog.path),
                             synchronous=config.eventlog.synchronous)
        await log.open()
    try:
        yield log
    finally:
        await log.close()


def _kafka(settings: KafkaConfig) -> KafkaEventLog:
    try:
        from services.core.eventlog.kafka import KafkaEventLog  # noqa: PLC0415 - optional extra
    except ImportError:
        raise ConfigError("eventlog.backend (DOCKYARD_BUS) is kafka, but aiokafka is not"
                          " installed: pip install 'dockyard[kafka]'") from None
    return KafkaEventLog(
        settings.bootstrap,
        partitions=settings.partitions,
        replication=settings.replication,
        client_id=settings.client_id,
        transactions=settings.transactions,
        idempotence=settings.idempotence,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        connection=kafka_connection(settings),
    )


def kafka_connection(settings: KafkaConfig) -> dict[str, Any]:
    """aiokafka's security arguments from ``[kafka]`` (the same for producer, consumer, admin)."""
    connection: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415 - optional extra

        cafile = None if settings.ca_file is None else str(settings.ca_file)
        try:
            connection["ssl_context"] = create_ssl_context(cafile=cafile)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"kafka.ca_file (DOCKYARD_KAFKA_CA_FILE): cannot load {cafile}:"
                              f" {exc}") from None
    if settings.security_protocol.startswith("SASL_"):
        connection |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    return connection


async def _open_kafka(log: KafkaEventLog, settings: KafkaConfig) -> None:
    from aiokafka.errors import KafkaError  # noqa: PLC0415 - optional extra

    password = settings.sasl_password.get_secret_value()

    def scrub(text: str) -> str:
        return text.replace(password, "***") if password else text

    try:
        await log.open()
    except (KafkaError, OSError) as exc:
        await log.close()
        raise ConfigError(
            f"kafka.bootstrap (DOCKYARD_KAFKA_BOOTSTRAP): no Kafka broker answered at"
            f" {settings.bootstrap} ({scrub(repr(exc))}); check the address and"
            f" kafka.security_protocol ({settings.security_protocol}) and the sasl_* settings"
        ) from None
    except RuntimeError as exc:  # the broker refused the producer; the message says what to set
        raise ConfigError(scrub(str(exc))) from None
