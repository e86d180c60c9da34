"""Input sources read in bounded chunks: HDF5 (PyTables or h5py layouts) and DataFrame files (Parquet/Feather/CSV).

A source exposes its row count, whole small columns (labels, ids, groups) and ``read_rows``, which yields the
data values of requested rows in the requested order: HDF5 in blocks of at most ``BLOCK_BYTES``; DataFrame files
in one block holding every requested value (a shard's rows), read one row group / batch / CSV chunk at a time.
Errors name file, node/column, row.
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from shardkit.spec import is_remote

from .errors import InputError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_LOCK = threading.RLock()  # the HDF5 library is not thread-safe; thread workers take turns
BLOCK_BYTES = 16 << 20
CSV_CHUNK_ROWS = 50_000
CSV_KEEP_BYTES = 16 << 20  # a local CSV up to this size keeps its columns' text once read (a worker writes many shards)


@dataclass(frozen=True)
class SourceSpec:
    """Where one input's rows live: the file and the names of its data and small columns (plain, picklable)."""

    path: str
    data: str
    label: str
    id: str | None = None
    group: str | None = None
    parts: tuple[str, ...] = ()  # the files of a glob or folder, sorted: one table, rows numbered across them
    part_rows: tuple[int, ...] = ()  # their row counts, once the driver has opened them
    columns: tuple[str, ...] = ()  # further columns/nodes read per row (more features and targets)

    @property
    def names(self) -> tuple[str, ...]:
        """Every column/node this input must have, one row per example."""
        return tuple(dict.fromkeys(n for n in (self.data, self.label, self.id, self.group, *self.columns) if n))


def open_binary(path: str) -> Any:
    """A readable binary file object for a local path or a Beam FileSystems URL (gs://, s3://, ...)."""
    if not is_remote(path):
        return open(path.removeprefix("file://"), "rb")
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def file_stat(path: str) -> tuple[int, float]:
    """(size in bytes, modification time as a POSIX timestamp) of a local or remote file."""
    if not is_remote(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime
    from apache_beam.io.filesystems import FileSystems

    meta = FileSystems.match([path])[0].metadata_list[0]
    return meta.size_in_bytes, float(meta.last_updated_in_seconds or 0)


def detect_format(path: str) -> str:
    """'hdf5', 'parquet', 'feather' or 'csv' by file content (suffix for CSV); clear error otherwise."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(path):
            raise InputError(f"{path}: no such file")
    elif not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    elif os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an HDF5, Parquet, Feather or CSV file")
    if is_remote(path):
        from .ranged import RangeFile

        with RangeFile(path) as f:
            head = f.head(8)
    else:
        with open(path, "rb") as f:
            head = f.read(8)
    if head == HDF5_SIGNATURE:
        return "hdf5"
    import tables

    if not is_remote(path) and tables.is_hdf5_file(path):
        return "hdf5"
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1" or head[:4] == b"FEA1":
        return "feather"
    if path.lower().endswith((".csv", ".tsv")):
        return "csv"
    raise InputError(f"{path}: not an HDF5, Parquet, Feather or CSV file (no known signature or suffix)")


GLOB_CHARS = "*?["
SKIPPED_PREFIXES = ("_", ".")  # _SUCCESS, _metadata, .part-0.crc: what Spark and Hive write beside the parts


def expand_input(path: str) -> list[str]:
    """The files an input names, sorted: itself, the matches of a glob (``data/*.h5``,
    ``s3://b/parts/*.parquet``), or every file under a folder or prefix (Spark's and pandas' part files)
    except names starting with '_' or '.'. InputError when nothing matches."""
    remote = is_remote(path)
    if any(c in path for c in GLOB_CHARS):
        found = _match(path) if remote else [p for p in glob.glob(path) if os.path.isfile(p)]
        if not found:
            raise InputError(f"{path}: matches no file")
        return sorted(found)
    if remote:
        from apache_beam.io.filesystems import FileSystems

        if not path.endswith("/") and FileSystems.exists(path):
            return [path]
        root = path.rstrip("/") + "/"
        found = [p for p in _match(root + "**") if not _skipped(p[len(root):])]
        if not found:
            raise InputError(f"{path}: no such file, folder or prefix")
        return sorted(found)
    if os.path.isdir(path):
        found = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs
                 if not _skipped(os.path.relpath(os.path.join(r, f), path))]
        if not found:
            raise InputError(f"{path}: folder holds no input files (names starting with _ or . are skipped)")
        return sorted(found)
    return [path]


def _skipped(rel: str) -> bool:
    return any(part.startswith(SKIPPED_PREFIXES) for part in rel.replace(os.sep, "/").split("/"))


def _match(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # noqa: BLE001 - no match is an error on some filesystems
        return []


def open_source(spec: SourceSpec) -> "Source":
    """Open one input for reading (driver and workers alike); the parts of a glob or folder as one table."""
    if spec.parts:
        from .table import TableSource

        return TableSource(spec)
    fmt = detect_format(spec.path)
    if fmt == "hdf5":
        if is_remote(spec.path):
            from .remote_hdf5 import RemoteHDF5Source

            return RemoteHDF5Source(spec)
        return HDF5Source(spec)
    return DataFrameSource(spec, fmt)


class Source:
    """Common interface of all inputs."""

    spec: SourceSpec
    fmt: str
    num_rows: int

    def where(self, name: str) -> str:
        raise NotImplementedError

    def column(self, name: str) -> np.ndarray:
        """A whole small column (labels, ids, groups) as a numpy array of ``num_rows``."""
        raise NotImplementedError

    def column_blocks(self, name: str, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, values) blocks of a small column in file order, about ``rows`` rows each where the
        format reads in parts, so that a planner can bound its memory on long columns."""
        yield 0, self.column(name)

    def data_info(self, name: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
        """Per-row shape and dtype of the data node/column (or of node/column ``name``)."""
        raise NotImplementedError

    def read_rows(self, rows: np.ndarray, name: str | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield (row numbers, values) blocks covering ``rows`` in the given order (see the module docstring)
        from the data node/column, or from node/column ``name``."""
        raise NotImplementedError

    def take(self, rows: np.ndarray, name: str) -> Any:
        """The values of ``rows`` of node/column ``name`` in one block (an array for HDF5, else a list)."""
        blocks = [values for _, values in self.read_rows(rows, name)]
        if len(blocks) == 1:
            return blocks[0]
        if isinstance(blocks[0], np.ndarray):
            return np.concatenate(blocks)
        return [v for b in blocks for v in b]

    def iter_data(self) -> Iterator[tuple[int, Any]]:
        """Yield (first row, values) blocks of the data column in file order."""
        yield from self.read_rows(np.arange(self.num_rows))

    def close(self) -> None:
        pass


class HDF5Columns(Source):
    """The column reads every HDF5 source shares; a subclass opens the file and provides ``_node(name)``
    and ``_data`` (the data node)."""

    _data: Any

    def _node(self, name: str, numeric: bool = False) -> Any:
        raise NotImplementedError

    def column(self, name: str) -> np.ndarray:
        with HDF5_LOCK:
            return np.asarray(self._node(name)[:])

    def column_blocks(self, name: str, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        node = self._node(name)
        for first in range(0, self.num_rows, rows):
            with HDF5_LOCK:
                yield first, np.asarray(node[first : first + rows])

    def data_info(self, name: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
        node = self._data if name is None or name == self.spec.data else self._node(name)
        return tuple(int(d) for d in node.shape[1:]), np.dtype(node.dtype)


class HDF5Source(HDF5Columns):
    """An HDF5 file opened with PyTables (reads PyTables EArrays/CArrays and plain h5py datasets alike)."""

    def __init__(self, spec: SourceSpec) -> None:
        import tables

        self.spec, self.fmt = spec, "hdf5"
        with HDF5_LOCK:
            try:
                self._file = tables.open_file(spec.path, mode="r")
            except Exception as e:  # noqa: BLE001 - PyTables raises several types for damaged files
                raise InputError(f"{spec.path}: cannot open as HDF5: {e}") from e
            try:
                self._init()
            except BaseException:
                self._file.close()
                raise

    def _init(self) -> None:
        spec = self.spec
        self._data = self._node(spec.data, numeric=True)
        self.num_rows = int(self._data.shape[0])
        if self.num_rows == 0:
            raise InputError(f"{self.where(spec.data)}: zero rows")
        for name in spec.names:
            if name != spec.data:
                n = int(self._node(name).shape[0])
                if n != self.num_rows:
                    raise InputError(
                        f"{spec.path}: row counts differ: {self._path(spec.data)} has {self.num_rows} rows, "
                        f"{self._path(name)} has {n}"
                    )
        row_bytes = max(1, int(np.prod(self._data.shape[1:])) * self._data.dtype.itemsize)
        self._block = max(1, BLOCK_BYTES // row_bytes)

    @staticmethod
    def _path(name: str) -> str:
        return name if name.startswith("/") else "/" + name

    def where(self, name: str) -> str:
        return f"{self.spec.path}: node {self._path(name)}"

    def _node(self, name: str, numeric: bool = False) -> Any:
        import tables

        try:
            node = self._file.get_node(self._path(name))
        except tables.NoSuchNodeError:
            leaves = sorted(n._v_pathname for n in self._file.walk_nodes("/", classname="Leaf"))
            raise InputError(f"{self.spec.path}: no node {self._path(name)}; nodes are {leaves}") from None
        if isinstance(node, tables.Table) or not isinstance(node, tables.Leaf) or not node.shape:
            raise InputError(f"{self.where(name)}: not an array with one row per example")
        if numeric and (isinstance(node, tables.VLArray) or node.dtype.kind in "OSU"):
            raise InputError(f"{self.where(name)}: holds {node.dtype} values; HDF5 data must be numeric arrays")
        return node

    def _raw_rows(self, name: str) -> "RawRows | None":
        """Direct reads for uncompressed numbers (contiguous, or chunks holding whole rows), else None (also
        when ``_raw`` is set to None: the library path, for comparison)."""
        if getattr(self, "_raw", True) is None:
            return None
        if not hasattr(self, "_raws"):
            self._raws: dict[str, RawRows | None] = {}
        if name not in self._raws:
            with HDF5_LOCK:
                self._raws[name] = RawRows.open(self.spec.path, self._path(name))
        return self._raws[name]

    def read_rows(self, rows: np.ndarray, name: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks in the given order; each block is read in sorted order (contiguous runs as one slice)."""
        name = name or self.spec.data
        node = self._data if name == self.spec.data else self._node(name)
        raw = self._raw_rows(name)
        size = self._block if node is self._data else max(1, BLOCK_BYTES // max(1, int(np.prod(node.shape[1:])) * node.dtype.itemsize))
        for start in range(0, len(rows), size):
            block = np.asarray(rows[start : start + size], dtype=np.int64)
            out = np.empty((len(block),) + tuple(node.shape[1:]), dtype=node.dtype)
            if raw is not None:
                raw.read(block, out)
                yield block, out
                continue
            order = np.argsort(block, kind="stable")
            srt = block[order]
            i = 0
            with HDF5_LOCK:
                while i < len(srt):
                    j = i + 1
                    while j < len(srt) and srt[j] == srt[j - 1] + 1:
                        j += 1
                    out[order[i:j]] = node[int(srt[i]) : int(srt[j - 1]) + 1]
                    i = j
            yield block, out

    def close(self) -> None:
        for raw in getattr(self, "_raws", {}).values():
            if raw is not None:
                raw.close()
        with HDF5_LOCK:
            self._file.close()


def raw_layout(d: Any) -> tuple[int, int, np.ndarray] | None:
    """(row bytes, rows per chunk, each chunk's byte offset) of an h5py dataset whose rows are stored as
    plain bytes (no filters; contiguous, or chunks holding whole rows), else None."""
    if d.compression or d.shuffle or d.fletcher32 or d.scaleoffset or d.dtype.kind not in "biuf":
        return None
    if d.id.get_create_plist().get_nfilters() or d.external:
        return None
    row_bytes = int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize
    if d.chunks is None:
        offset = d.id.get_offset()
        if offset is None:
            return None
        return row_bytes, max(1, d.shape[0]), np.array([offset], np.int64)
    if tuple(d.chunks[1:]) != tuple(d.shape[1:]):
        return None
    chunk_rows = int(d.chunks[0])
    starts = np.full(-(-d.shape[0] // chunk_rows), -1, np.int64)

    def note(info: Any) -> None:
        starts[info.chunk_offset[0] // chunk_rows] = info.byte_offset

    try:
        d.id.chunk_iter(note)
    except AttributeError:
        for i in range(d.id.get_num_chunks()):
            note(d.id.get_chunk_info(i))
    if (starts < 0).any():
        return None
    return row_bytes, chunk_rows, starts


class RawRows:
    """Reads rows of an uncompressed HDF5 dataset straight from the file with ``os.preadv`` into the
    caller's buffer, skipping HDF5's per-read overhead on rows in shuffled order (benchmark: "Converter fast
    paths" in docs/benchmarks.md; tests/test_fast_paths.py checks it against ``node[rows]``)."""

    def __init__(self, path: str, row_bytes: int, chunk_rows: int, starts: np.ndarray, native: bool = True) -> None:
        self.path, self.row_bytes, self.chunk_rows, self.starts = path, row_bytes, chunk_rows, starts
        self.native = native  # stored in this machine's byte order
        self.fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, path: str, name: str) -> "RawRows | None":
        """Byte layout of dataset ``name`` via h5py, or None if rows are not stored as plain bytes."""
        if not hasattr(os, "preadv"):
            return None
        import h5py

        with h5py.File(path, "r") as f:
            d = f[name]
            layout, native = raw_layout(d), d.dtype.isnative or d.dtype.itemsize == 1
        return None if layout is None else cls(path, *layout, native)

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out[i]`` with row ``rows[i]`` (reads in file order; bytes swapped where ``out``'s byte order
        is not the file's)."""
        flat = out.reshape(len(rows), -1).view(np.uint8)
        offsets = self.starts[rows // self.chunk_rows] + (rows % self.chunk_rows) * self.row_bytes
        for i in np.argsort(offsets, kind="stable"):
            buf = memoryview(flat[i])
            got = os.preadv(self.fd, [buf], int(offsets[i]))
            if got != self.row_bytes:
                raise InputError(f"{self.path}: row {int(rows[i])}: short read at byte {int(offsets[i])}: {got} of {self.row_bytes} bytes")
        if out.dtype.itemsize > 1 and out.dtype.isnative != self.native:
            out.byteswap(inplace=True)

    def close(self) -> None:
        os.close(self.fd)


class DataFrameSource(Source):
    """A Parquet, Feather or CSV file; only the named columns are read, in row groups / batches / chunks."""

    def __init__(self, spec: SourceSpec, fmt: str) -> None:
        self.spec, self.fmt = spec, fmt
        try:
            self._open()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types for damaged files
            raise InputError(f"{spec.path}: cannot read as {fmt}: {e}") from e
        for name in spec.names:
            if name not in self.columns:
                raise InputError(f"{spec.path}: no column {name!r}; columns are {self.columns}")
        if self.num_rows == 0:
            raise InputError(f"{self.where(spec.data)}: zero rows")

    def _open(self) -> None:
        import pyarrow as pa

        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            if is_remote(self.spec.path):
                from .ranged import RangeFile

                self._pq = pq.ParquetFile(RangeFile(self.spec.path))
            else:
                self._pq = pq.ParquetFile(self.spec.path)
            self.columns = list(self._pq.schema_arrow.names)
            self.num_rows = int(self._pq.metadata.num_rows)
            sizes = [self._pq.metadata.row_group(i).num_rows for i in range(self._pq.num_row_groups)]
        elif self.fmt == "feather":
            try:
                src = open_binary(self.spec.path) if is_remote(self.spec.path) else pa.memory_map(self.spec.path, "r")
                self._ipc = pa.ipc.open_file(src)
            except pa.ArrowInvalid:
                import pyarrow.feather as feather

                table = feather.read_table(open_binary(self.spec.path))
                self._ipc = None
                self._table = table
                self.columns = list(table.schema.names)
                self.num_rows = table.num_rows
                self._offsets = np.array([0, self.num_rows])
                return
            self.columns = list(self._ipc.schema.names)
            sizes = [self._ipc.get_batch(i).num_rows for i in range(self._ipc.num_record_batches)]
            self.num_rows = int(sum(sizes))
        else:
            import pandas as pd

            self._sep = "\t" if self.spec.path.lower().endswith(".tsv") else ","
            with open_binary(self.spec.path) as f:
                self.columns = list(pd.read_csv(f, nrows=0, sep=self._sep).columns)
            self.num_rows = -1
            name = self.spec.label if self.spec.label in self.columns else self.columns[0]
            self._cache = {name: self._csv_column(name)}
            self.num_rows = len(self._cache[name])
            return
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def where(self, name: str) -> str:
        return f"{self.spec.path}: column {name!r}"

    def _csv_column(self, name: str) -> np.ndarray:
        import pandas as pd

        with open_binary(self.spec.path) as f:
            parts = [c[name].to_numpy() for c in pd.read_csv(f, usecols=[name], sep=self._sep,
                                                                chunksize=CSV_CHUNK_ROWS)]
        return np.concatenate(parts) if parts else np.array([])

    def column(self, name: str) -> np.ndarray:
        if self.fmt == "csv":
            return self._cache.pop(name) if name in self._cache else self._csv_column(name)
        if self.fmt == "parquet":
            col = self._pq.read(columns=[name]).column(0)
        elif self._ipc is None:
            col = self._table.column(name)
        else:
            col = _concat([self._ipc.get_batch(i).column(name) for i in range(self._ipc.num_record_batches)])
        return _to_numpy(col)

    def column_blocks(self, name: str, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        if self.fmt != "parquet":
            yield 0, self.column(name)
            return
        for i in range(self._pq.num_row_groups):
            yield int(self._offsets[i]), _to_numpy(self._pq.read_row_group(i, columns=[name]).column(0))

    def data_info(self, name: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
        return (), np.dtype(object)

    def _part(self, i: int, name: str) -> list[Any]:
        if self.fmt == "parquet":
            return self._pq.read_row_group(i, columns=[name]).column(0).to_pylist()
        if self._ipc is None:
            return self._table.column(name).to_pylist()
        return self._ipc.get_batch(i).column(name).to_pylist()

    def read_rows(self, rows: np.ndarray, name: str | None = None) -> Iterator[tuple[np.ndarray, list[Any]]]:
        """One sweep over the file (row groups / batches / CSV chunks with skips), then the values in order."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        values: list[Any] = [None] * len(rows)
        for first, part in self._sweep(srt, name or self.spec.data):
            lo, hi = np.searchsorted(srt, [first, first + len(part)])
            for k in range(lo, hi):
                values[order[k]] = part[srt[k] - first]
        yield rows, values

    def _sweep(self, srt: np.ndarray, name: str) -> Iterator[tuple[int, list[Any]]]:
        if self.fmt == "csv":
            import pandas as pd

            kept = getattr(self, "_text", {})
            if name in kept:
                yield 0, kept[name]
                return
            if not is_remote(self.spec.path) and os.path.getsize(self.spec.path) <= CSV_KEEP_BYTES:
                with open_binary(self.spec.path) as f:
                    self._text = {**kept, name: pd.read_csv(f, usecols=[name], sep=self._sep, dtype=str,
                                                            keep_default_na=False)[name].tolist()}
                yield 0, self._text[name]
                return

            first = 0
            with open_binary(self.spec.path) as f:
                for chunk in pd.read_csv(f, usecols=[name], sep=self._sep, dtype=str,
                                         keep_default_na=False, chunksize=CSV_CHUNK_ROWS):
                    part = chunk[name].tolist()
                    lo, hi = np.searchsorted(srt, [first, first + len(part)])
                    if hi > lo:
                        yield first, part
                    first += len(part)
            return
        for i in range(len(self._offsets) - 1):
            lo, hi = np.searchsorted(srt, [self._offsets[i], self._offsets[i + 1]])
            if hi > lo:
                yield int(self._offsets[i]), self._part(i, name)

    def iter_data(self) -> Iterator[tuple[int, list[Any]]]:
        yield from self._sweep(np.arange(self.num_rows), self.spec.data)


def _concat(chunks: list[Any]) -> Any:
    import pyarrow as pa

    return pa.chunked_array(chunks)


def _to_numpy(col: Any) -> np.ndarray:
    import pyarrow as pa

    t = col.type
    if pa.types.is_integer(t) and col.null_count == 0:
        return col.to_numpy()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return col.to_numpy(zero_copy_only=False) if col.null_count == 0 else np.array(
            [np.nan if v is None else v for v in col.to_pylist()], dtype=np.float64)
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        vals = col.to_pylist()
        try:
            return np.array(vals, dtype=np.float64)
        except (ValueError, TypeError):
            return np.array(vals, dtype=object)
    return np.array(col.to_pylist(), dtype=object)

