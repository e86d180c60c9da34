"""Several files of one table (a glob, a folder of part files) read as one input."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

import numpy as np

from .errors import InputError
from .sources import BLOCK_BYTES, Source, SourceSpec, open_source


class TableSource(Source):
    """Several files of one table (a glob, a folder of part files) read as one: rows are numbered across
    the parts in sorted path order, so row ids and the plan do not depend on runner or worker count.

    The driver opens every part (to count and check them); a worker opens a part when it first needs it.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._open: dict[int, Source] = {}
        if not spec.part_rows:
            try:
                for i in range(len(spec.parts)):
                    self._part(i)
            except BaseException:
                self.close()
                raise
            counts = tuple(self._open[i].num_rows for i in range(len(spec.parts)))
            self.spec = replace(spec, part_rows=counts)
        first = self._part(0)
        self.fmt = first.fmt
        for i, src in self._open.items():
            if src.fmt != self.fmt:
                raise InputError(f"{spec.parts[i]}: is {src.fmt}, but {spec.parts[0]} is {self.fmt}; the files of "
                                 f"{spec.path} must share one format")
            for name in (spec.data, *spec.columns):
                if src.data_info(name) != first.data_info(name):
                    raise InputError(f"{src.where(name)}: rows are {src.data_info(name)[0]} {src.data_info(name)[1]}, "
                                     f"but in {spec.parts[0]} they are {first.data_info(name)[0]} {first.data_info(name)[1]}")
        self.offsets = np.concatenate([[0], np.cumsum(self.spec.part_rows)]).astype(np.int64)
        self.num_rows = int(self.offsets[-1])

    def _part(self, i: int) -> Source:
        if i not in self._open:
            s = self.spec
            self._open[i] = open_source(SourceSpec(s.parts[i], s.data, s.label, s.id, s.group, columns=s.columns))
        return self._open[i]

    def where(self, name: str) -> str:
        return f"{self.spec.path} ({len(self.spec.parts)} files, rows numbered across them): " + \
            self._part(0).where(name).rsplit(": ", 1)[-1]

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([self._part(i).column(name) for i in range(len(self.spec.parts))])

    def column_blocks(self, name: str, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        for i in range(len(self.spec.parts)):
            for first, values in self._part(i).column_blocks(name, rows):
                yield int(self.offsets[i]) + first, values

    def data_info(self, name: str | None = None) -> tuple[tuple[int, ...], np.dtype]:
        return self._part(0).data_info(name)

    def iter_data(self) -> Iterator[tuple[int, Any]]:
        for i in range(len(self.spec.parts)):
            for first, values in self._part(i).iter_data():
                yield int(self.offsets[i]) + first, values

    def read_rows(self, rows: np.ndarray, name: str | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Blocks in the given order; each block asks every part for its rows once."""
        rows = np.asarray(rows, dtype=np.int64)
        shape, dtype = self.data_info(name)
        arrays = self.fmt == "hdf5"
        block = max(1, BLOCK_BYTES // max(1, int(np.prod(shape or (1,))) * dtype.itemsize)) if arrays else len(rows)
        part_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for start in range(0, len(rows), max(block, 1)):
            blk, owner = rows[start : start + block], part_of[start : start + block]
            values: Any = np.empty((len(blk),) + shape, dtype) if arrays else [None] * len(blk)
            for i in np.unique(owner):
                at = np.flatnonzero(owner == i)
                done = 0
                for got, vals in self._part(int(i)).read_rows(blk[at] - self.offsets[i], name):
                    where = at[done : done + len(got)]
                    if arrays:
                        values[where] = vals
                    else:
                        for k, v in zip(where, vals):
                            values[k] = v
                    done += len(got)
            yield blk, values

    def close(self) -> None:
        for src in self._open.values():
            src.close()
        self._open.clear()
