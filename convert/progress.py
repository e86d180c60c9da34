"""Progress while the Beam job runs (rows/s, MB/s) and a summary at the end, printed to stderr.

Progress is read from the output: finished shards leave a stats file, shards in progress are estimated
from their size, so it works for any runner whose workers write to a filesystem this process can see.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from shardkit.spec import Metadata, is_remote


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


class Progress:
    """A background thread that reports converted rows, rows/s and input MB/s every ``interval`` seconds."""

    def __init__(self, tmp_dir: str, total_rows: int, total_bytes: float, record_bytes: float,
                 enabled: bool = True, log: TextIO | None = None, interval: float = 2.0) -> None:
        self.tmp_dir, self.total_rows, self.total_bytes = tmp_dir, total_rows, total_bytes
        self.record_bytes, self.enabled, self.interval = max(record_bytes, 1.0), enabled, interval
        self.log = log or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.time()

    def rows_done(self) -> int:
        """Rows in finished shards plus an estimate for shards being written."""
        done = 0
        finished = set()
        for path in glob.glob(os.path.join(self.tmp_dir, "_stats", "*.json")):
            try:
                with open(path, encoding="utf-8") as f:
                    st = json.load(f)
            except (OSError, ValueError):
                continue
            done += st["count"]
            finished.add(os.path.basename(st["path"]))
        for path in glob.glob(os.path.join(self.tmp_dir, "*", "*.inprogress-*")):
            try:
                done += int(os.path.getsize(path) / self.record_bytes)
            except OSError:
                pass
        return min(done, self.total_rows)

    def line(self) -> str:
        elapsed = max(time.time() - self._start, 1e-9)
        rows = self.rows_done()
        frac = rows / max(self.total_rows, 1)
        mb = self.total_bytes * frac / 1e6
        return (f"shardkit-convert: {rows}/{self.total_rows} rows ({100 * frac:.0f}%)  "
                f"{rows / elapsed:,.0f} rows/s  {mb / elapsed:,.1f} MB/s  {elapsed:,.0f}s")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(), file=self.log, flush=True)

    def __enter__(self) -> "Progress":
        self._start = time.time()
        if self.enabled and not is_remote(self.tmp_dir):
            self._thread = threading.Thread(target=self._loop, name="shardkit-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def summary(self, meta: Metadata, seconds: float) -> None:
        """Print per-split counts, shards, bytes and class counts, and overall throughput."""
        out = self.log
        rows = sum(s.count for s in meta.splits.values())
        size = sum(sh.bytes for s in meta.splits.values() for sh in s.shards)
        print(f"shardkit-convert: done in {seconds:.1f}s: {rows} rows, {rows / max(seconds, 1e-9):,.0f} rows/s, "
              f"{self.total_bytes / 1e6 / max(seconds, 1e-9):,.1f} MB/s in, {_human(size)} written", file=out)
        names = meta.label.names if meta.stratify is not None else ()
        for split, info in meta.splits.items():
            classes = ", ".join(f"{n}:{c}" for n, c in zip(names, info.class_counts))
            print(f"  {split:<10} {info.count:>9} rows  {len(info.shards):>4} shards  "
                  f"{_human(sum(s.bytes for s in info.shards)):>10}" + (f"  classes {classes}" if names else ""), file=out)
        st = meta.stats
        if any(f.kind == "sequence" for f in meta.features):
            print(f"  sequences: max length {st.get('max_length')}, {st.get('truncated_sequences', 0)} truncated "
                  f"({st.get('truncated_letters', 0)} letters cut off), {st.get('unknown_letters', 0)} unknown "
                  "letters stored as 0", file=out)
        out.flush()
