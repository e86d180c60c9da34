"""Benchmark inputs: the built-in examples written once into a cache directory and converted with the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from .measure import REPO

DEFAULT_CACHE = os.environ.get("SHARDKIT_BENCH_CACHE", "/tmp/shardkit-bench-cache")


def knots_h5(cache: str, n: int) -> str:
    """A class-sorted PyTables knot file (seed-000 layout, 128x128x3) of ``n`` rows, written once per cache.

    Rows repeat a bank of up to 1,500 real renders (convert_bench.make_knots), so multi-GB inputs take
    minutes, not hours, to generate."""
    from .convert_bench import make_knots

    path = os.path.join(cache, f"knots-{n}.h5")
    return _once(path, lambda tmp: make_knots(tmp, n, bank=max(3, min(1500, n))))


def proteins_parquet(cache: str, n: int, seed: int = 0, max_length: int = 1000) -> str:
    """A protein Parquet file (seed-001 columns) with ``n`` rows, written once per cache."""
    from shardkit.convert.examples import write_proteins

    path = os.path.join(cache, f"proteins-{n}-{max_length}-s{seed}.parquet")
    return _once(path, lambda tmp: write_proteins(tmp, n, seed=seed, max_length=max_length))


def features_h5(cache: str, n: int, timesteps: int = 100, dim: int = 2048, seed: int = 0) -> str:
    """An h5py feature-sequence file (seed-003 layout) with ``n`` rows, written once per cache."""
    from shardkit.convert.examples import write_feature_sequences

    path = os.path.join(cache, f"features-{n}-{timesteps}x{dim}-s{seed}.h5")
    return _once(path, lambda tmp: write_feature_sequences(tmp, n, seed=seed, timesteps=timesteps, dim=dim))


KNOT_ARGS = ("--kind", "image", "--data", "/train_data", "--label", "/train_label")
PROTEIN_ARGS = ("--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1")
FEATURE_ARGS = ("--kind", "array", "--data", "/features", "--label", "/labels")


def convert(inputs: Sequence[str], out: str, args: Sequence[str], workers: int = 1) -> str:
    """Convert with ``shardkit-convert`` in a child process into ``out`` (reused if already complete)."""
    if os.path.exists(os.path.join(out, "metadata.json")):
        return out
    argv = [sys.executable, "-m", "shardkit.convert", *inputs, "--out", out, "--workers", str(workers),
            "--overwrite", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out


def knots_dataset(cache: str, n: int, extra: Sequence[str] = (), tag: str = "") -> str:
    """``n`` knot images converted to a shardkit dataset (``extra`` CLI flags, e.g. PNG or GZIP)."""
    src = knots_h5(cache, n)
    return convert([src], os.path.join(cache, f"ds-knots-{n}{tag}"), [*KNOT_ARGS, "--image-shape", "128,128,3", *extra])


def proteins_dataset(cache: str, n: int, max_length: int = 660, extra: Sequence[str] = (), tag: str = "") -> str:
    """``n`` protein rows converted to amino-acid codes padded to ``max_length``."""
    src = proteins_parquet(cache, n)
    name = f"ds-proteins-{n}-{max_length}{tag}"
    return convert([src], os.path.join(cache, name), [*PROTEIN_ARGS, "--max-length", str(max_length), *extra])


def features_dataset(cache: str, n: int, extra: Sequence[str] = (), tag: str = "") -> str:
    """``n`` (100, 2048) feature sequences converted to float arrays."""
    src = features_h5(cache, n)
    return convert([src], os.path.join(cache, f"ds-features-{n}{tag}"), [*FEATURE_ARGS, *extra])


def _once(path: str, write) -> str:
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    base, ext = os.path.splitext(path)
    tmp = f"{base}.partial-{os.getpid()}{ext}"
    write(tmp)
    os.replace(tmp, path)
    return path
