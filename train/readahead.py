"""Read-ahead of the shard bytes a reader is about to read, in the order its interleave will read them.

The reader's shard order is fixed by (seed, epoch) before an epoch starts, and its interleave reads
``cycle_length`` shards ``block_length`` records at a time, so the position of every byte in the stream is
known in advance. ``ReadAhead`` walks that schedule in a background thread and asks the disk for each chunk
(``posix_fadvise(WILLNEED)``; for a bucket dataset, the cache downloads the shard) while it lies at most
``budget`` bytes ahead of what the reader has consumed. Records, their order and their count are untouched.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
from typing import Any, Sequence

import numpy as np

CHUNK = 4 << 20  # bytes per read-ahead request
REPORT_BYTES = 64 << 20  # records consumed are reported about this often, or 4 times per budget if that is less


def schedule(sizes: Sequence[int], counts: Sequence[int], cycle: int, block: int,
             chunk: int = CHUNK) -> list[tuple[int, int, int, int]]:
    """Chunks ``(need, file, start, end)`` sorted by ``need``: how many records a deterministic interleave of
    the files (in this order, ``cycle`` at a time, ``block`` records each) yields before the chunk's first byte."""
    n = len(sizes)
    starts: list[list[int]] = [[] for _ in range(n)]  # stream position of each block of each file
    left, slots, nxt, pos, i = list(counts), [-1] * max(1, cycle), 0, 0, 0
    while nxt < n or any(s >= 0 for s in slots):
        f = slots[i]
        if f < 0 and nxt < n:
            f = slots[i] = nxt
            nxt += 1
        if f >= 0:
            take = min(block, left[f])
            if take:
                starts[f].append(pos)
            pos, left[f] = pos + take, left[f] - take
            if not left[f]:
                slots[i] = -1
        i = (i + 1) % len(slots)
    out = []
    for f, (size, count) in enumerate(zip(sizes, counts)):
        per = size / max(1, count)
        for start in range(0, size, chunk) if count else ():
            record = min(int(start / per), count - 1)
            out.append((starts[f][record // block] + record % block, f, start, min(size, start + chunk)))
    out.sort()
    return out


class ReadAhead:
    """A background thread keeping the next ``budget`` bytes of the reader's schedule on their way.

    ``start`` (from the pipeline, once per pass over the shards) gives the files in reading order; ``advance``
    reports records consumed. ``fetch(path, start, end)`` asks for a chunk and returns False when it cannot
    yet (a full cache); the chunk is then asked for again.
    """

    def __init__(self, budget_bytes: int, cycle: int, block: int, sizes: dict[str, int], lag_records: int = 0,
                 fetch: Any = None, chunk: int = CHUNK, record_bytes: float = 1.0) -> None:
        self.budget, self.cycle, self.block, self.sizes = budget_bytes, cycle, block, sizes
        self.record_bytes = record_bytes  # mean record size: how often ``counted`` reports
        self.lag, self.chunk, self.fetch = lag_records, chunk, fetch or willneed
        self.chunks: list[tuple[int, int, int, int]] = []
        self.paths: list[str] = []
        self.next = self.consumed = self.ahead = 0
        self.cv = threading.Condition()
        self.thread: threading.Thread | None = None

    def start(self, paths: Sequence[str], counts: Sequence[int]) -> None:
        """A new pass over ``paths`` in this order (counts: records read from each) begins."""
        paths = [p.decode() if isinstance(p, bytes) else str(p) for p in paths]
        sizes = [self.sizes.get(p, 0) for p in paths]
        chunks = schedule(sizes, [int(c) for c in counts], self.cycle, self.block, self.chunk)
        total = sum(int(c) for c in counts)
        with self.cv:
            self.paths, self.chunks, self.next, self.consumed = paths, chunks, 0, 0
            self.ahead = int(self.budget / max(1.0, sum(sizes) / max(1, total))) + self.lag
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="shardkit-readahead", daemon=True)
                self.thread.start()
            self.cv.notify_all()

    def advance(self, records: int) -> None:
        with self.cv:
            self.consumed += int(records)
            self.cv.notify_all()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not (self.next < len(self.chunks) and self.chunks[self.next][0] <= self.consumed + self.ahead):
                    self.cv.wait()
                chunks, i = self.chunks, self.next
                _, f, start, end = chunks[i]
                path = self.paths[f]
            done = self.fetch(path, start, end)
            with self.cv:
                if self.chunks is chunks and self.next == i:
                    if done:
                        self.next += 1
                    else:
                        self.cv.wait(0.05)

    # tf.data glue: the pipeline calls these through tf.py_function.
    def start_op(self, paths: Any, counts: Any, limits: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        def started(p: Any, c: Any, lim: Any) -> Any:
            lim = lim.numpy()
            self.start(list(p.numpy()), np.where(lim >= 0, lim, c.numpy()))
            return p

        out = tf.py_function(started, [paths, counts, limits], tf.string)
        out.set_shape(paths.shape)
        return out, counts, limits

    def counted(self, batches: Any, batch_size: int, scale: int = 1) -> Any:
        """``batches`` (of serialized records) unchanged, each paired with a tick of a repeating cycle of ``every``
        ticks whose last one reports the cycle's records consumed: one Python call per ``REPORT_BYTES`` of records
        (or a quarter of the budget), and no function runs per batch (tf.data short-circuits the map that drops
        the tick). ``scale``: records of the interleave per record passing (a worker taking every n-th record)."""
        import tensorflow as tf

        every = max(1, round(min(REPORT_BYTES, self.budget / 4) / max(1, batch_size * self.record_bytes)))

        def note(tick: Any) -> Any:
            self.advance(every * batch_size * scale)
            return tick

        tick = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
        report = tick.map(lambda t: tf.ensure_shape(tf.py_function(note, [t], tf.int64), []))
        ticks = tick.repeat(every - 1).concatenate(report).repeat()
        return tf.data.Dataset.zip((batches, ticks)).map(lambda batch, _tick: batch)


def willneed(path: str, start: int, end: int) -> bool:
    """Ask the kernel to read ``path[start:end]`` into the page cache, without waiting for it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # the reader reports a missing shard itself
    try:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)
    return True


def parallel_read(paths: Sequence[str], threads: int = 8, block: int = 8 << 20) -> None:
    """Read ``paths`` as fast as the disk allows: ``threads`` threads, each reading whole files in order."""
    from concurrent.futures import ThreadPoolExecutor

    def read(path: str) -> None:
        with open(path, "rb", buffering=0) as f:
            while f.read(block):
                pass

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, paths))


def evict(paths: Sequence[str]) -> None:
    """Drop ``paths`` from the page cache (written-back first), so that the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_fraction(paths: Sequence[str]) -> float:
    """The fraction of the bytes of ``paths`` that sit in the page cache now (``mincore``)."""
    page, total, resident = mmap.PAGESIZE, 0, 0
    for path in paths:
        size = os.path.getsize(path)
        if not size:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), f"cannot map {path}")
            pages = (size + page - 1) // page
            vec = np.zeros(pages, np.uint8)
            try:
                if _libc.mincore(addr, size, vec.ctypes.data) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore failed on {path}")
            finally:
                _libc.munmap(addr, size)
        finally:
            os.close(fd)
        resident += int((vec & 1).sum()) * page
        total += pages * page
    return resident / total if total else 1.0
