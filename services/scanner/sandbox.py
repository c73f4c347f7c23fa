"""Each image's layers are read and its detectors run in a child process of its own.

The layer reader and the detectors parse hostile input, and the server may be the all-in-one
``dockyard serve``: a thread cannot be stopped, and a memory limit inside the server would be
the server's. So a scan's CPU-bound part runs in ``python -m services.scanner.child``, which
the kernel confines (``RLIMIT_AS`` to ``[scanner] max_memory_bytes``, ``RLIMIT_FSIZE`` 0: it
cannot grow a file, so no temporary file fills the disk; its working and temporary directory
is an empty scratch directory removed afterwards; its environment carries none of the server's
settings or secrets) and which is killed when the scan times out or is cancelled. Starting it
costs about 0.15 s of CPU and 30 MB while it runs (measured here), against the seconds a real
image takes to download.

The parent streams each layer from the registry into the child's stdin as frames (a kind
byte, a 4-byte big-endian length, the payload): ``L`` a layer's ``{"digest", "media_type"}``,
``D`` its bytes, ``E`` its end, ``F`` the end of the image. The child answers once on stdout
with ``{"inventory": …}`` or ``{"error": REASON}``, and ``peak_rss_kib`` (its VmHWM) either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import services
from services.core.registry import RegistryClient
from services.ingest.manifests import Descriptor
from services.scanner.child import (
    END_IMAGE,
    END_LAYER,
    FRAME,
    LAYER,
    LAYER_DATA,
    peak_rss_kib,
)
from services.scanner.inventory import inventory_from_json
from services.scanner.limits import ScanLimits
from services.scanner.models import Inventory

__all__ = ["SandboxError", "read_inventory"]

log = logging.getLogger("dockyard.scanner")

# The child's answer: an inventory of tens of thousands of packages is a few megabytes.
MAX_ANSWER_BYTES = 64 << 20
# What is kept of the child's stderr, for the log when it dies.
STDERR_TAIL = 4096
_CODE_ROOT = str(Path(services.__file__).resolve().parent.parent)


class SandboxError(Exception):
    """The child refused the image or died; the message is the scan's reason."""


async def read_inventory(
    registry: RegistryClient,
    repository: str,
    layers: Sequence[Descriptor],
    limits: ScanLimits,
) -> Inventory:
    """The image's inventory, made by a child process fed the layers from the registry."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dockyard-scan-") as scratch:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.scanner.child", json.dumps(asdict(limits)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=scratch, env=_child_env(scratch),
        )
        answer = asyncio.ensure_future(_read_capped(child.stdout, MAX_ANSWER_BYTES))
        stderr = asyncio.ensure_future(_read_capped(child.stderr, STDERR_TAIL, tail=True))
        peak, data, too_long = None, b"", False
        try:
            await _feed(child, registry, repository, layers)
            data, too_long = await answer
            await child.wait()
        finally:
            if child.returncode is None:  # timed out, cancelled, or the registry failed
                peak = peak_rss_kib(child.pid)
                child.kill()
                await child.wait()
            answer.cancel()
            errors, _ = await stderr  # the child is gone: its end of the pipe is closed
    result: dict[str, Any] = (
        {"error": f"the scan's answer is over {MAX_ANSWER_BYTES} bytes"} if too_long
        else _answer(data, child.returncode, errors, limits))
    if isinstance(result.get("peak_rss_kib"), int):
        peak = result["peak_rss_kib"]
    log.info("scan process finished", extra={
        "peak_rss_kib": peak, "seconds": round(time.monotonic() - started, 3),
        "returncode": child.returncode})
    if "error" in result or not isinstance(result.get("inventory"), dict):
        raise SandboxError(str(result.get("error")))
    return inventory_from_json(result["inventory"])


def _child_env(scratch: str) -> dict[str, str]:
    """Not the server's environment, which holds its secrets (DOCKYARD_*): this very code
    first on the path (the child must run what the parent runs), temporary files in the
    scratch directory, and few malloc arenas (each reserves 64 MiB of address space, which
    counts against RLIMIT_AS)."""
    path = os.pathsep.join(p for p in (_CODE_ROOT, os.environ.get("PYTHONPATH")) if p)
    return {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": path, "TMPDIR": scratch,
            "SQLITE_TMPDIR": scratch, "MALLOC_ARENA_MAX": "2", "LC_ALL": "C.UTF-8"}


async def _feed(
    child: asyncio.subprocess.Process,
    registry: RegistryClient,
    repository: str,
    layers: Sequence[Descriptor],
) -> None:
    """Stream the layers into the child; stops quietly when the child has stopped reading
    (it refused the image and says why on stdout)."""
    pipe = child.stdin
    if pipe is None:  # pragma: no cover - created with a pipe
        raise RuntimeError("no pipe to the scan process")

    async def send(kind: bytes, payload: bytes = b"") -> None:
        pipe.write(FRAME.pack(kind, len(payload)))
        pipe.write(payload)
        await pipe.drain()

    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for layer in layers:
            await send(LAYER, json.dumps({"digest": layer.digest,
                                          "media_type": layer.media_type}).encode())
            async with registry.blob(repository, layer.digest) as chunks:
                async for chunk in chunks:
                    if chunk:
                        await send(LAYER_DATA, chunk)
            await send(END_LAYER)
        await send(END_IMAGE)
        pipe.close()


async def _read_capped(
    stream: asyncio.StreamReader | None, limit: int, *, tail: bool = False
) -> tuple[bytes, bool]:
    """The stream to its end, keeping ``limit`` bytes (the first, or the last with ``tail``);
    and whether more came."""
    kept, over = b"", False
    if stream is None:  # pragma: no cover - created with a pipe
        return kept, over
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > limit:
            over = True
            kept = kept[-limit:] if tail else kept[:limit]
    return kept, over


def _answer(data: bytes, returncode: int | None, errors: bytes,
            limits: ScanLimits) -> dict[str, Any]:
    try:
        result = json.loads(data)
    except ValueError:
        result = None
    if isinstance(result, dict) and ("inventory" in result or "error" in result):
        return result
    log.warning("scan process died", extra={"returncode": returncode,
                                            "stderr": errors.decode("utf-8", "replace")})
    if returncode is not None and returncode < 0:
        return {"error": f"the scan process was killed by signal {-returncode} (over"
                         f" {limits.memory_bytes} bytes of memory, [scanner] max_memory_bytes,"
                         " or stopped by the system); the server log has details"}
    return {"error": f"the scan process ended without an answer (exit status {returncode});"
                     " the server log has details"}
