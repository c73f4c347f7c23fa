"""``dockyard serve`` as a real child process, for tests of processes that run side by side.

``ServeProcess`` runs ``dockyard serve --config FILE [--service NAME …]`` with its own listen
address (``DOCKYARD_SERVER_LISTEN``) and any other ``DOCKYARD_*`` overrides, logs to a file that
survives restarts, and can be stopped politely, killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.support.registry import free_port
from tests.support.waiting import eventually

__all__ = ["DOCKYARD", "ServeProcess"]

DOCKYARD = Path(sys.executable).with_name("dockyard")


class ServeProcess:
    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        services: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.services = list(services)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}), DOCKYARD_SERVER_LISTEN=f"127.0.0.1:{self.port}")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        service_args = [arg for name in self.services for arg in ("--service", name)]
        return [str(DOCKYARD), "serve", "--config", str(self.config_path), *service_args]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env,
            )

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until liveness answers; fail with the log if the process exited."""

        async def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.command} exited with {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(f"{self.url}/api/v1/health/live")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answers, bool, timeout=timeout, what=f"{self.command} answering")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    async def exited(self, timeout: float) -> int:
        """Wait for the process to end on its own (a failpoint, a crash); its exit status."""
        process = self.process
        assert process is not None
        status = await eventually(lambda: _poll(process), lambda s: s is not None,
                                  timeout=timeout, what=f"{self.command} exiting")
        self.process = None
        assert status is not None
        return status

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status, or None if it had to be killed."""
        process, self.process = self.process, None
        if process is None:
            return None
        process.terminate()
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def _poll(process: subprocess.Popen[bytes]) -> int | None:
    return process.poll()
