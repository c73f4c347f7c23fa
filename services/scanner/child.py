"""``python -m services.scanner.child LIMITS``: one image's layers in, its inventory out.

Started by services/scanner/sandbox.py, which documents the frames on stdin and the answer on
stdout. The process confines itself before reading anything (address space, no file growth, no
core dumps), then reads each layer with the scan's one ``Budget`` and runs the detectors over
the image's final filesystem.
"""

from __future__ import annotations

import asyncio
import json
import resource
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.scanner.detectors import DETECTORS
from services.scanner.inventory import build_inventory, inventory_to_json
from services.scanner.layers import LayerContents, LayerError, Selector, read_layer
from services.scanner.limits import Budget, Refused, ScanLimits

__all__ = ["END_IMAGE", "END_LAYER", "FRAME", "LAYER", "LAYER_DATA", "main", "peak_rss_kib"]

FRAME = struct.Struct(">cI")
LAYER, LAYER_DATA, END_LAYER, END_IMAGE = b"L", b"D", b"E", b"F"


class _ProtocolError(Exception):
    pass


def peak_rss_kib(pid: int | str = "self") -> int | None:
    """A process' peak resident set size (VmHWM, /proc/PID/status), None once it is gone."""
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _confine(limits: ScanLimits) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of killing.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def _frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, bytes]]:
    while True:
        try:
            kind, length = FRAME.unpack(await reader.readexactly(FRAME.size))
            payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise _ProtocolError("the server stopped sending the image") from None
        yield kind, payload


async def _layer_chunks(frames: AsyncIterator[tuple[bytes, bytes]]) -> AsyncIterator[bytes]:
    async for kind, payload in frames:
        if kind == END_LAYER:
            return
        if kind != LAYER_DATA:
            raise _ProtocolError(f"frame {kind!r} inside a layer")
        yield payload


async def _inventory(limits: ScanLimits) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=FRAME.size + (16 << 20))
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    frames = _frames(reader)
    budget = Budget(limits)
    selector = Selector(DETECTORS, file_bytes=limits.file_bytes)
    contents: list[LayerContents] = []
    async for kind, payload in frames:
        if kind == END_IMAGE:
            break
        if kind != LAYER:
            raise _ProtocolError(f"frame {kind!r} where a layer should start")
        layer = json.loads(payload)
        contents.append(await read_layer(_layer_chunks(frames), digest=layer["digest"],
                                         media_type=layer["media_type"], selector=selector,
                                         budget=budget))
    return inventory_to_json(build_inventory(contents, DETECTORS))


def main() -> None:
    limits = ScanLimits(**json.loads(sys.argv[1]))
    _confine(limits)
    answer: dict[str, Any]
    try:
        answer = {"inventory": asyncio.run(_inventory(limits))}
    except (LayerError, Refused, _ProtocolError) as exc:
        answer = {"error": str(exc)}
    except MemoryError:
        answer = {"error": f"the scan needed more than {limits.memory_bytes} bytes of memory"
                           " ([scanner] max_memory_bytes)"}
    answer["peak_rss_kib"] = peak_rss_kib()
    sys.stdout.buffer.write(json.dumps(answer).encode())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
