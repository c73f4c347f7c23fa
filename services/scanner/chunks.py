"""Bytes that arrive on the event loop, read as a blocking file by a worker thread.

A blob streamed from the registry is decompressed and parsed by code that wants a file with a
blocking ``read`` (gzip, zstandard, tarfile) and is CPU-bound, so it runs in a thread.
``read_in_thread`` moves the chunks from the network into a bounded queue in one task (so at
most ``QUEUE_CHUNKS`` chunks are held) and hands the thread a ``ChunkSource`` over that queue,
which hashes what it reads (the caller checks the blob's digest).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

__all__ = ["CHUNK_WAIT_SECONDS", "QUEUE_CHUNKS", "ChunkSource", "StreamError", "read_in_thread"]

T = TypeVar("T")

# How many chunks may wait between the network and the thread: bounds memory, keeps both
# sides busy.
QUEUE_CHUNKS = 8
# A thread waiting this long for the next chunk gives up instead of hanging forever if the
# event loop has gone away; the registry client's own read timeout is far shorter.
CHUNK_WAIT_SECONDS = 600.0


class StreamError(Exception):
    """The bytes stopped coming: the download failed, stalled, or reading was called off."""


async def read_in_thread(
    chunks: AsyncIterator[bytes], work: Callable[[ChunkSource], T], *, name: str
) -> T:
    """``work`` run in a worker thread on a ``ChunkSource`` fed from ``chunks``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_CHUNKS)
    source = ChunkSource(queue, loop)
    pump = asyncio.create_task(_pump(chunks, queue), name=name)
    try:
        return await asyncio.to_thread(work, source)
    finally:
        source.stopped = True
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        # When the caller was cancelled (a timeout) the thread may still wait for a chunk: wake
        # it so it stops now rather than after CHUNK_WAIT_SECONDS.
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(StreamError("reading stopped"))


async def _pump(
    chunks: AsyncIterator[bytes], queue: asyncio.Queue[bytes | BaseException | None]
) -> None:
    """Moves chunks from the network into the queue, all in one task (httpx wants that)."""
    try:
        async for chunk in chunks:
            if chunk:
                await queue.put(chunk)
    except Exception as exc:  # noqa: BLE001 - handed to the reader thread, which raises it
        await queue.put(exc)
        return
    await queue.put(None)


class ChunkSource(io.RawIOBase):
    """A blocking, read-only file over the queue, for the worker thread; hashes as it reads."""

    def __init__(
        self,
        queue: asyncio.Queue[bytes | BaseException | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._queue = queue
        self._loop = loop
        self._buffer = b""
        self._offset = 0  # read position in _buffer: slicing off the front would copy the rest
        self._eof = False
        self.stopped = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._eof:
            return False
        if self.stopped:
            raise StreamError("reading stopped")
        future = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
        try:
            item = future.result(CHUNK_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StreamError(f"no data for {CHUNK_WAIT_SECONDS:.0f} s") from None
        if isinstance(item, BaseException):
            raise StreamError(f"download failed: {item}") from item
        if item is None:
            self._eof = True
            return False
        self.sha256.update(item)
        self.size += len(item)
        self._buffer = self._buffer[self._offset:] + item
        self._offset = 0
        return True

    def peek(self, size: int) -> bytes:
        while len(self._buffer) - self._offset < size and self._fill():
            pass
        return self._buffer[self._offset:self._offset + size]

    def read(self, size: int = -1) -> bytes:
        if self._offset >= len(self._buffer):
            self._fill()
        start = self._offset
        end = len(self._buffer) if size < 0 else min(start + size, len(self._buffer))
        self._offset = end
        if start == 0 and end == len(self._buffer):
            return self._buffer  # the whole chunk: no copy
        return self._buffer[start:end]

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end, so the digest covers the whole blob (tar padding, trailers)."""
        self._buffer, self._offset = b"", 0
        while self._fill():
            self._buffer = b""
