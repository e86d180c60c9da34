"""Built-in example datasets for demos, tests, benchmarks: knot images, protein sequences, feature sequences,
and the multi-column layouts: a protein table (several features and targets), a CSV of PNG paths, and a
label table of per-sample .npy feature sequences.

Each generator is seeded, writes in bounded chunks and produces data a small model can learn.
Command line: ``python -m shardkit.convert.examples KIND PATH [--n N] [--seed S] ...``, KIND one of
knots, proteins, features, table, pngs, npys.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

import numpy as np

KNOT_CLASSES = ("unknot", "plus_trefoil", "minus_trefoil")
AMINO = "ACDEFGHIKLMNPQRSTVWY"
RARE = "XBUOZ"
EC_MOTIFS = ("CHHC", "GDSGG", "KMSK", "HEXXH", "NPQRT", "WWYW", "DFGDE")


def _disk(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2
    return dy[keep], dx[keep]


def _knot_curve(cls: int, rng: np.random.Generator, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    if cls == 0:
        wob = rng.uniform(-0.25, 0.25, 3)
        r = 2.2 * (1 + wob[0] * np.sin(2 * t + wob[1]) + 0.15 * np.sin(3 * t + wob[2]))
        x, y, z = r * np.cos(t), r * rng.uniform(0.6, 1.0) * np.sin(t), np.zeros_like(t)
    else:
        x, y, z = np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)
        if cls == 2:
            x = -x
    a = rng.uniform(0, 2 * np.pi)
    x, y = x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)
    return x, y, z


def knot_image(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one knot diagram (0 unknot, 1 plus trefoil, 2 minus trefoil) as a (size, size, 3) uint8 image."""
    x, y, z = _knot_curve(cls, rng, points=max(300, size * 6))
    scale = size / 7.2 * rng.uniform(0.8, 1.0)
    cx, cy = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
    px, py = np.round(cx + scale * x).astype(np.intp), np.round(cy + scale * y).astype(np.intp)
    thick = max(1.0, size / 64)
    ink_dy, ink_dx = _disk(thick)
    gap_dy, gap_dx = _disk(thick * 3.5)
    # a strand is hidden (a gap = under-crossing) where a higher strand passes within the gap radius
    zbuf = np.full((size + 20, size + 20), -np.inf)
    yy = np.clip(py[:, None] + gap_dy[None, :], -10, size + 9) + 10
    xx = np.clip(px[:, None] + gap_dx[None, :], -10, size + 9) + 10
    np.maximum.at(zbuf, (yy, xx), np.repeat(z[:, None], len(gap_dy), axis=1))
    iy = np.clip(py[:, None] + ink_dy[None, :], -10, size + 9) + 10
    ix = np.clip(px[:, None] + ink_dx[None, :], -10, size + 9) + 10
    visible = z[:, None] >= zbuf[iy, ix] - 0.5
    ink = np.zeros((size + 20, size + 20), dtype=bool)
    ink[iy[visible], ix[visible]] = True
    ink = ink[10:-10, 10:-10]
    background = rng.integers(200, 256, 3)
    colour = rng.integers(0, 90, 3)
    img = np.empty((size, size, 3), dtype=np.int16)
    img[...] = background
    img[ink] = colour
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_knots(path: str, n_per_class: int, size: int = 128, seed: int = 0) -> str:
    """Write knot images to a PyTables file: EArray /train_data (N, size*size*3) uint8, /train_label (N,) int64.

    Rows are class-sorted (all unknots, then plus trefoils, then minus trefoils); N = 3 * n_per_class.
    """
    import tables

    rng = np.random.default_rng(seed)
    chunk = 256
    with tables.open_file(path, mode="w") as f:
        data = f.create_earray(
            f.root, "train_data", tables.UInt8Atom(), shape=(0, size * size * 3), expectedrows=3 * n_per_class
        )
        labels = f.create_earray(f.root, "train_label", tables.Int64Atom(), shape=(0,), expectedrows=3 * n_per_class)
        for cls in range(len(KNOT_CLASSES)):
            for start in range(0, n_per_class, chunk):
                n = min(chunk, n_per_class - start)
                data.append(np.stack([knot_image(cls, size, rng).reshape(-1) for _ in range(n)]))
                labels.append(np.full(n, cls, dtype=np.int64))
    return path


def _protein(rng: np.random.Generator, ec: int, length: int) -> str:
    seq = rng.choice(np.frombuffer(AMINO.encode(), np.uint8), length)
    motif = EC_MOTIFS[ec - 1].replace("X", "A").encode()
    for _ in range(max(2, length // 40)):
        at = int(rng.integers(0, max(1, length - len(motif))))
        seq[at : at + len(motif)] = np.frombuffer(motif, np.uint8)[: length - at]
    return seq.tobytes().decode()


def _mutate(rng: np.random.Generator, seq: str) -> str:
    arr = np.frombuffer(seq.encode(), np.uint8).copy()
    hits = rng.random(len(arr)) < 0.03
    arr[hits] = rng.choice(np.frombuffer(AMINO.encode(), np.uint8), int(hits.sum()))
    if rng.random() < 0.3:
        arr[int(rng.integers(len(arr)))] = ord(RARE[int(rng.integers(len(RARE)))])
    return arr.tobytes().decode()


def _protein_rows(n: int, seed: int, min_length: int, max_length: int) -> Iterator[tuple[int, str, int, int]]:
    rng = np.random.default_rng(seed)
    row = 0
    cluster = 0
    while row < n:
        ec = int(rng.integers(1, 8))
        base = _protein(rng, ec, int(rng.integers(min_length, max_length + 1)))
        for _ in range(min(int(rng.integers(1, 5)), n - row)):
            yield row, _mutate(rng, base), ec, cluster
            row += 1
        cluster += 1


def write_proteins(path: str, n: int, seed: int = 0, min_length: int = 50, max_length: int = 1000) -> str:
    """Write n protein rows (id, Sequence, ec_lvl_1 in 1..7, cluster_id) as .parquet/.csv/.feather by suffix.

    Each EC class plants its own motif; near-identical sequences share a cluster_id; some carry rare letters.
    """
    import pandas as pd

    rows = list(_protein_rows(n, seed, min_length, max_length))
    df = pd.DataFrame(rows, columns=["id", "Sequence", "ec_lvl_1", "cluster_id"])
    df = df.astype({"id": "int64", "ec_lvl_1": "int64", "cluster_id": "int64"})
    ext = os.path.splitext(path)[1].lower()
    if ext == ".parquet":
        df.to_parquet(path, index=False, row_group_size=max(1024, n // 16))
    elif ext == ".csv":
        df.to_csv(path, index=False)
    elif ext == ".feather":
        df.to_feather(path)
    else:
        raise ValueError(f"{path}: suffix must be .parquet, .csv or .feather")
    return path


def write_feature_sequences(path: str, n: int, seed: int = 0, timesteps: int = 100, dim: int = 2048) -> str:
    """Write an h5py file: /features (n, timesteps, dim) float32 and /labels (n,) int64 in {0, 1} (learnable)."""
    import h5py

    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, dim).astype(np.float32) * (rng.random(dim) < 0.05)
    with h5py.File(path, "w") as f:
        feats = f.create_dataset("features", (n, timesteps, dim), dtype="float32", chunks=(1, timesteps, dim))
        labels = f.create_dataset("labels", (n,), dtype="int64")
        chunk = max(1, (64 << 20) // (timesteps * dim * 4))
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            y = rng.integers(0, 2, m)
            x = rng.normal(0, 1, (m, timesteps, dim)).astype(np.float32)
            x += (2 * y[:, None, None] - 1) * 0.5 * signal[None, None, :]
            feats[start : start + m] = x
            labels[start : start + m] = y
    return path


EC2_MOTIFS = ("PWP", "YCY", "MEM")  # the finer class ec_lvl_2 = "<ec_lvl_1>.<1..3>" plants one of these too
FAMILIES = ("alpha", "beta", "gamma", "delta")
PROPS = 8


def write_protein_table(path: str, n: int, seed: int = 0, min_length: int = 50, max_length: int = 400) -> str:
    """A multi-column protein table (.parquet or .feather): id, Sequence, props (a list of 8 floats), family (a
    category), ec_lvl_1 (1..7) and ec_lvl_2 ("<ec>.<1..3>") class targets, stability (a float) and cluster_id.

    Learnable: ec_lvl_1 from its motif, ec_lvl_2 from a second motif and the family (which follows the
    sub-class 3 times in 4), stability = a linear function of props plus noise.
    """
    import pandas as pd

    rng = np.random.default_rng(seed + 1)
    weights = rng.normal(0, 1, PROPS)
    rows = []
    for row, seq, ec, cluster in _protein_rows(n, seed, min_length, max_length):
        sub = int(rng.integers(1, 4))
        arr = np.frombuffer(seq.encode(), np.uint8).copy()
        motif = np.frombuffer(EC2_MOTIFS[sub - 1].encode(), np.uint8)
        for _ in range(2):
            at = int(rng.integers(0, max(1, len(arr) - len(motif))))
            arr[at : at + len(motif)] = motif[: len(arr) - at]
        props = rng.normal(0, 1, PROPS).astype(np.float32)
        family = FAMILIES[sub - 1] if rng.random() < 0.75 else FAMILIES[int(rng.integers(len(FAMILIES)))]
        stability = float(props @ weights + rng.normal(0, 0.1))
        rows.append((row, arr.tobytes().decode(), props.tolist(), family, ec, f"{ec}.{sub}", stability, cluster))
    df = pd.DataFrame(rows, columns=["id", "Sequence", "props", "family", "ec_lvl_1", "ec_lvl_2", "stability",
                                     "cluster_id"])
    ext = os.path.splitext(path)[1].lower()
    if ext == ".parquet":
        df.to_parquet(path, index=False, row_group_size=max(1024, n // 16))
    elif ext == ".feather":
        df.to_feather(path)
    else:
        raise ValueError(f"{path}: suffix must be .parquet or .feather (props is a list column)")
    return path


def write_png_table(path: str, n_per_class: int, size: int = 32, seed: int = 0) -> str:
    """A CSV of PNG paths with labels: ``path,label`` rows (paths relative to the CSV's folder, in images/),
    knot images whose label is the knot's name; rows are shuffled."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    classes = np.repeat(np.arange(len(KNOT_CLASSES)), n_per_class)
    rng.shuffle(classes)
    lines = ["path,label"]
    for i, cls in enumerate(classes):
        rel = f"images/{i:06d}.png"
        Image.fromarray(knot_image(int(cls), size, rng)).save(os.path.join(folder, rel))
        lines.append(f"{rel},{KNOT_CLASSES[int(cls)]}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_npy_table(path: str, n: int, seed: int = 0, timesteps: int = 100, dim: int = 2048) -> str:
    """Seed 003's layout: one (timesteps, dim) float32 .npy feature sequence per sample in features/, and a
    label table ``path,label`` (CSV; binary labels, learnable as in ``write_feature_sequences``)."""
    rng = np.random.default_rng(seed)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(os.path.join(folder, "features"), exist_ok=True)
    signal = rng.normal(0, 1, dim).astype(np.float32) * (rng.random(dim) < 0.05)
    lines = ["path,label"]
    for i in range(n):
        y = int(rng.integers(0, 2))
        x = rng.normal(0, 1, (timesteps, dim)).astype(np.float32) + (2 * y - 1) * 0.5 * signal[None, :]
        rel = f"features/{i:06d}.npy"
        np.save(os.path.join(folder, rel), x)
        lines.append(f"{rel},{y}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: write one built-in example dataset."""
    p = argparse.ArgumentParser(prog="python -m shardkit.convert.examples", description=__doc__)
    p.add_argument("kind", choices=["knots", "proteins", "features", "table", "pngs", "npys"])
    p.add_argument("path")
    p.add_argument("--n", type=int, default=300, help="rows (knots, pngs: rows per class)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, help="knot image side (default: knots 128, pngs 32)")
    p.add_argument("--min-length", type=int, default=50, help="proteins: shortest sequence")
    p.add_argument("--max-length", type=int, default=1000, help="proteins: longest sequence")
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--dim", type=int, default=2048)
    a = p.parse_args(argv)
    if a.kind in ("proteins", "table") and not 1 <= a.min_length <= a.max_length:
        p.error(f"--min-length {a.min_length} and --max-length {a.max_length}: need 1 <= min <= max")
    if a.kind == "knots":
        write_knots(a.path, a.n, size=a.size or 128, seed=a.seed)
    elif a.kind == "proteins":
        write_proteins(a.path, a.n, seed=a.seed, min_length=a.min_length, max_length=a.max_length)
    elif a.kind == "table":
        write_protein_table(a.path, a.n, seed=a.seed, min_length=a.min_length, max_length=a.max_length)
    elif a.kind == "pngs":
        write_png_table(a.path, a.n, size=a.size or 32, seed=a.seed)
    elif a.kind == "npys":
        write_npy_table(a.path, a.n, seed=a.seed, timesteps=a.timesteps, dim=a.dim)
    else:
        write_feature_sequences(a.path, a.n, seed=a.seed, timesteps=a.timesteps, dim=a.dim)
    print(a.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
