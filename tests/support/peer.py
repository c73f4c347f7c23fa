"""A real peer the tests run as a child process: started, awaited until it answers, stopped.

Subclasses say how to start it (``command``) and how to tell it is ready (``answers``); the
process's output goes to a log file whose tail is in every failure message.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PeerProcess"]


class PeerProcess:
    name = "peer"

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self._log = log
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(self.command(), stdout=out, stderr=out,
                                             env=self._env)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; log tail:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
