"""The one builder of benchmark inputs: the built-in examples written once into a cache directory, and
converted once with the real ``shardkit-convert`` command line (in this process)."""

from __future__ import annotations

import os
import re
from typing import Iterator

import numpy as np

DEFAULT_CACHE = os.environ.get("SHARDKIT_BENCH_CACHE", "/tmp/shardkit-bench-cache")
ARGS = {"knots": ["--kind", "image", "--data", "/train_data", "--label", "/train_label"],
        "proteins": ["--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1"],
        "features": ["--kind", "array", "--data", "/features", "--label", "/labels"]}


def _write_knots(path: str, rows: int, size: int) -> None:
    """Class-sorted knot images in a PyTables EArray, repeating up to 1,500 renders (multi-GB inputs in minutes)."""
    import tables

    from shardkit.convert.examples import knot_image

    rng = np.random.default_rng(0)
    per = max(1, min(1500, rows) // 3)
    banks = [np.stack([knot_image(c, size, rng).reshape(-1) for _ in range(per)]) for c in range(3)]
    with tables.open_file(path, "w") as f:
        data = f.create_earray(f.root, "train_data", tables.UInt8Atom(), (0, size * size * 3), expectedrows=rows)
        labels = f.create_earray(f.root, "train_label", tables.Int64Atom(), (0,), expectedrows=rows)
        for c in range(3):
            n = rows // 3 + (1 if c < rows % 3 else 0)
            for start in range(0, n, 256):
                m = min(256, n - start)
                data.append(banks[c][np.arange(start, start + m) % per])
                labels.append(np.full(m, c, np.int64))


def _write_rows(path: str, rows: int) -> None:
    """``rows`` float32 (4,) rows in h5py datasets /x, /y, labels sorted by class as exported tables often are."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", (rows, 4), np.float32, chunks=(min(rows, 1 << 16), 4))
        for start in range(0, rows, 1 << 22):
            x[start : start + (1 << 22)] = rng.standard_normal((min(1 << 22, rows - start), 4), dtype=np.float32)
        f.create_dataset("y", data=np.sort(rng.integers(0, 7, rows)).astype(np.int64), chunks=(min(rows, 1 << 20),))


def source(cache: str, kind: str, n: int, size: int = 128) -> str:
    """The ``kind`` example (knots: class-sorted images in a PyTables EArray; proteins: Parquet with an EC
    label; features: (100, 2048) float sequences in HDF5; rows: small float vectors; pngs: a CSV of PNG paths and
    knot names, n // 3 of each) with ``n`` rows, written once per cache."""
    from shardkit.convert import examples

    names = {"knots": f"knots-{n}" + (f"-{size}" if size != 128 else "") + ".h5",
             "proteins": f"proteins-{n}-1000-s0.parquet", "features": f"features-{n}-100x2048-s0.h5",
             "rows": f"rows-{n}.h5", "pngs": f"pngs-{n}-{size}/images.csv"}
    path = os.path.join(cache, names[kind])
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        base, ext = os.path.splitext(path)
        tmp = f"{base}.partial-{os.getpid()}{ext}"  # the extension tells the converter the format
        {"knots": lambda: _write_knots(tmp, n, size),
         "proteins": lambda: examples.write_proteins(tmp, n, seed=0, max_length=1000),
         "features": lambda: examples.write_feature_sequences(tmp, n, seed=0, timesteps=100, dim=2048),
         "rows": lambda: _write_rows(tmp, n), "pngs": lambda: examples.write_png_table(tmp, n // 3, size=size)}[kind]()
        os.replace(tmp, path)
    return path


def knot_rows(src: str, block: int = 1024) -> Iterator[tuple[int, np.ndarray, int]]:
    """(row id, flat uint8 pixels, class id) of each row of a knot HDF5, in file (class-sorted) order."""
    import tables

    with tables.open_file(src, "r") as f:
        for start in range(0, len(f.root.train_label), block):
            x, y = f.root.train_data[start : start + block], f.root.train_label[start : start + block]
            yield from ((start + i, x[i], int(y[i])) for i in range(len(y)))


def knot_arrays(src: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A knot HDF5 loaded whole, as in-memory training holds it: uint8 images of ``shape`` and int32 class ids."""
    import tables

    with tables.open_file(src, "r") as f:
        return f.root.train_data[:].reshape(-1, *shape), f.root.train_label[:].astype(np.int32)


def dataset(cache: str, kind: str, n: int, *extra: str, size: int = 128, max_length: int = 660) -> str:
    """``source(kind, n)`` converted with ``extra`` CLI flags (e.g. ``--compression gzip``), once per cache."""
    tag = re.sub(r"[^a-z0-9]+", "-", " ".join(extra).lower()).strip("-")
    shape = {"knots": ["--image-shape", f"{size},{size},3"], "proteins": ["--max-length", str(max_length)]}
    name = f"ds-{kind}-{n}" + (f"-{size}" if size != 128 else "") + (f"-{max_length}" if kind == "proteins" else "")
    out = os.path.join(cache, name + (f"-{tag}" if tag else ""))
    if not os.path.exists(os.path.join(out, "metadata.json")):  # else nothing is imported: a bare GPU image reads it
        from shardkit.convert.cli import main as convert

        argv = [source(cache, kind, n, size=size), "--out", out, "--workers", "1", "--overwrite", "--quiet",
                *ARGS[kind], *shape.get(kind, []), *extra]
        if convert(argv) != 0:
            raise RuntimeError(f"shardkit-convert {' '.join(argv)} failed")
    return out
