"""Failpoints: named places where a crash test can have the process SIGKILLed, exactly there.

A test that kills a process from outside can only hope to hit the moment it is after: a consumer
lies between applying a batch and committing it for a millisecond or two. With
``DOCKYARD_FAILPOINT=NAME@N`` in its environment, the process sends itself SIGKILL the N-th time
it passes ``failpoint(NAME)`` (N defaults to 1): the kernel ends it there, as an OOM kill or a
power cut would, with nothing flushed or cleaned up. Without the variable a failpoint costs one
comparison. It is for tests; an operator has no reason to set it.

The failpoints:

- ``consumer.applied:GROUP:TOPIC``: a batch of GROUP's records on TOPIC is applied and its
  offsets are not committed yet (services/core/consume.py).
"""

from __future__ import annotations

import functools
import logging
import os
import signal

__all__ = ["ENVIRONMENT_VARIABLE", "failpoint"]

ENVIRONMENT_VARIABLE = "DOCKYARD_FAILPOINT"

log = logging.getLogger("dockyard.failpoints")

_passes: dict[str, int] = {}


@functools.cache
def _armed() -> tuple[str, int] | None:
    spec = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not spec:
        return None
    name, at, count = spec.partition("@")
    if not at:
        return name, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={spec!r}: expected NAME or NAME@N with N ≥ 1")
    return name, int(count)


def failpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed failpoint and this is its N-th pass."""
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    _passes[name] = passes = _passes.get(name, 0) + 1
    if passes == armed[1]:
        log.warning("failpoint reached: SIGKILL", extra={"failpoint": name})
        os.kill(os.getpid(), signal.SIGKILL)
