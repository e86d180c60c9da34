"""The converter's direct HDF5 row reads (``RawRows``, os.preadv) return what the library returns for
``node[rows]``: with a userblock before the HDF5 data, big-endian values, and a partial last chunk."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tables

from conftest import read_split, run_convert
from shardkit.convert.sources import HDF5Source, RawRows, SourceSpec

CASES = {  # id: (dtype, chunks, userblock bytes)
    "big-endian-float-chunked-userblock": (">f4", (7, 3), 512),
    "big-endian-int-contiguous-userblock": (">i2", None, 1024),
    "little-endian-double-chunked": ("<f8", (7, 3), 0),
    "uint8-contiguous": ("u1", None, 0),
}


def _write(path: str, dtype: str, chunks: tuple[int, int] | None, userblock: int, rows: int = 50) -> np.ndarray:
    """``rows`` x 3 values of ``dtype`` under /x (50 rows in chunks of 7: the last chunk holds 1 row), labels /y."""
    x = (np.random.default_rng(0).standard_normal((rows, 3)) * 100).astype(dtype)
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.create_dataset("x", data=x, chunks=chunks)
        f.create_dataset("y", data=np.arange(rows) % 2)
    return x


@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_reads_equal_the_library(case: str, tmp_path) -> None:
    dtype, chunks, userblock = CASES[case]
    path = str(tmp_path / "x.h5")
    x = _write(path, dtype, chunks, userblock)
    raw = RawRows.open(path, "/x")
    assert raw is not None, "the direct path must be taken for uncompressed rows"
    raw.close()
    rows = np.random.default_rng(1).permutation(len(x))
    rows = np.concatenate([rows, rows[:5]])  # repeated rows, as a block may ask for
    source = HDF5Source(SourceSpec(path, "/x", "/y"))
    try:
        got = np.concatenate([values for _, values in source.read_rows(rows)])
    finally:
        source.close()
    with tables.open_file(path) as f:
        want = np.stack([f.root.x[int(r)] for r in rows])  # the library, one row at a time
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["x"][:][rows], want)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_big_endian_source_converts_to_the_same_values(tmp_path) -> None:
    path = str(tmp_path / "be.h5")
    x = _write(path, ">f4", (7, 3), 512)
    out = str(tmp_path / "ds")
    rc, err = run_convert([path, "--out", out, "--kind", "array", "--data", "/x", "--label", "/y"])
    assert rc == 0, err
    seen = 0
    for split in ("train", "validation", "test"):
        recs = read_split(out, split)
        for row_id, value in zip(recs["row_id"], recs["array"]):
            assert np.array_equal(np.frombuffer(value, "<f4"), x[row_id].astype("<f4")), row_id
            seen += 1
    assert seen == len(x)
