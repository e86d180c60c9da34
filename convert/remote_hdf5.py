"""HDF5 inputs in object storage (any Beam FileSystems URL), read by h5py over range requests."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from .errors import InputError
from .sources import BLOCK_BYTES, HDF5_LOCK, HDF5Columns, HDF5Source, SourceSpec, raw_layout

HOLE_BYTES = 16 << 10  # rows of one chunk closer than this are fetched in one range request


class RemoteHDF5Source(HDF5Columns):
    """An HDF5 file in an object store (any Beam FileSystems URL), opened by h5py over range requests.

    Uncompressed rows are fetched directly: a shard's rows, sorted, become one request per run of nearby
    rows within a chunk, never a whole-file download. Filtered (compressed) data is read chunk by chunk,
    each chunk holding wanted rows once per block, as HDF5 must decompress whole chunks.
    """

    def __init__(self, spec: SourceSpec) -> None:
        import h5py

        from .ranged import RangeFile

        self.spec, self.fmt = spec, "hdf5"
        with HDF5_LOCK:
            try:
                self._fobj = RangeFile(spec.path)
                self._file = h5py.File(self._fobj, "r")
            except Exception as e:  # noqa: BLE001 - h5py raises several types for damaged files
                raise InputError(f"{spec.path}: cannot open as HDF5: {e}") from e
            try:
                self._data = self._node(spec.data, numeric=True)
                self.num_rows = int(self._data.shape[0])
                if self.num_rows == 0:
                    raise InputError(f"{self.where(spec.data)}: zero rows")
                for name in spec.names:
                    if int(self._node(name).shape[0]) != self.num_rows:
                        raise InputError(
                            f"{spec.path}: row counts differ: {HDF5Source._path(spec.data)} has {self.num_rows} "
                            f"rows, {HDF5Source._path(name)} has {int(self._node(name).shape[0])}")
                self._layouts = {spec.data: raw_layout(self._data)}
            except BaseException:
                self.close()
                raise
        row_bytes = max(1, int(np.prod(self._data.shape[1:])) * self._data.dtype.itemsize)
        self._block = max(1, BLOCK_BYTES // row_bytes)

    def where(self, name: str) -> str:
        return f"{self.spec.path}: node {HDF5Source._path(name)}"

    def _node(self, name: str, numeric: bool = False) -> Any:
        import h5py

        node = self._file.get(HDF5Source._path(name))
        if node is None:
            leaves: list[str] = []
            self._file.visititems(lambda n, o: leaves.append("/" + n) if isinstance(o, h5py.Dataset) else None)
            raise InputError(f"{self.spec.path}: no node {HDF5Source._path(name)}; nodes are {sorted(leaves)}")
        if not isinstance(node, h5py.Dataset) or not node.shape or node.dtype.names:
            raise InputError(f"{self.where(name)}: not an array with one row per example")
        if numeric and node.dtype.kind in "OSUV":
            raise InputError(f"{self.where(name)}: holds {node.dtype} values; HDF5 data must be numeric arrays")
        return node

    def read_rows(self, rows: np.ndarray, name: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        name = name or self.spec.data
        node = self._data if name == self.spec.data else self._node(name)
        if name not in self._layouts:
            with HDF5_LOCK:
                self._layouts[name] = raw_layout(node)
        layout = self._layouts[name]
        size = self._block if node is self._data else max(1, BLOCK_BYTES // max(1, int(np.prod(node.shape[1:])) * node.dtype.itemsize))
        for start in range(0, len(rows), size):
            block = np.asarray(rows[start : start + size], dtype=np.int64)
            out = np.empty((len(block),) + tuple(node.shape[1:]), dtype=node.dtype)
            if layout is not None:
                self._read_raw(block, out, layout)
            else:
                self._read_chunks(block, out, node)
            yield block, out

    def _read_raw(self, rows: np.ndarray, out: np.ndarray, layout: tuple[int, int, np.ndarray]) -> None:
        """Sorted rows grouped into runs (same chunk, gaps below HOLE_BYTES), one range request per run."""
        row_bytes, chunk_rows, starts = layout
        flat = out.reshape(len(rows), -1).view(np.uint8)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        offsets = starts[srt // chunk_rows] + (srt % chunk_rows) * row_bytes
        runs: list[tuple[int, int, int, int]] = []  # (first, last) index into srt, byte range
        i = 0
        while i < len(srt):
            j = i
            while (j + 1 < len(srt) and srt[j + 1] // chunk_rows == srt[i] // chunk_rows
                   and offsets[j + 1] - (offsets[j] + row_bytes) < HOLE_BYTES):
                j += 1
            runs.append((i, j, int(offsets[i]), int(offsets[j]) + row_bytes))
            i = j + 1
        datas = self._fobj.read_ranges([(a, b) for _, _, a, b in runs])
        for (i, j, a, _), data in zip(runs, datas):
            buf = np.frombuffer(data, np.uint8)
            for k in range(i, j + 1):
                at = int(offsets[k]) - a
                flat[order[k]] = buf[at : at + row_bytes]

    def _read_chunks(self, rows: np.ndarray, out: np.ndarray, node: Any) -> None:
        """Each chunk that holds wanted rows is read once, whole, and the rows taken from it."""
        chunk_rows = int(node.chunks[0]) if node.chunks else self.num_rows
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        i = 0
        while i < len(srt):
            c = int(srt[i]) // chunk_rows
            j = int(np.searchsorted(srt, (c + 1) * chunk_rows))
            with HDF5_LOCK:
                part = node[c * chunk_rows : min((c + 1) * chunk_rows, self.num_rows)]
            out[order[i:j]] = part[srt[i:j] - c * chunk_rows]
            i = j

    def close(self) -> None:
        with HDF5_LOCK:
            if getattr(self, "_file", None) is not None:
                self._file.close()
            if getattr(self, "_fobj", None) is not None:
                self._fobj.close()
