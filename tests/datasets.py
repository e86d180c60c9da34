"""Small datasets built with the REAL converter (``shardkit.convert.cli.main``), cached for the session.

Import from any test::

    from datasets import knots_dataset  # tests/ is on sys.path under pytest
    def test_x(tmp_path_factory):
        path = knots_dataset(tmp_path_factory, n_per_class=200, size=32)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

_CACHE: dict[tuple, str] = {}


def _build(tmp_path_factory: Any, key: tuple, make_source, convert_args: list[str]) -> str:
    if key in _CACHE and os.path.exists(os.path.join(_CACHE[key], "metadata.json")):
        return _CACHE[key]
    from shardkit.convert.cli import main

    root = tmp_path_factory.mktemp("dataset-" + key[0])
    source = make_source(str(root))
    out = str(root / "dataset")
    rc = main([source, "--out", out, *convert_args, "--workers", "1", "--quiet"])
    if rc != 0:
        raise RuntimeError(f"shardkit-convert failed ({rc}) building test dataset {key}")
    _CACHE[key] = out
    return out


def knots_dataset(
    tmp_path_factory: Any,
    n_per_class: int = 200,
    size: int = 32,
    num_shards: int = 4,
    compression: str = "none",
    seed: int = 0,
) -> str:
    """Class-sorted knot images in a PyTables EArray converted to ``num_shards`` train shards (0: the
    converter's default)."""
    from shardkit.convert.examples import write_knots

    key = ("knots", n_per_class, size, num_shards, compression, seed)
    return _build(
        tmp_path_factory,
        key,
        lambda root: write_knots(os.path.join(root, "knots.h5"), n_per_class, size=size, seed=seed),
        ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape", f"{size},{size},3",
         *(["--num-shards", str(num_shards)] if num_shards else []), "--compression", compression, "--seed", str(seed)],
    )


def proteins_dataset(
    tmp_path_factory: Any, n: int = 600, max_length: int = 200, num_shards: int = 2, seed: int = 0
) -> str:
    """Amino-acid sequences in Parquet with 7 EC classes, converted to codes padded to ``max_length``."""
    from shardkit.convert.examples import write_proteins

    key = ("proteins", n, max_length, num_shards, seed)
    return _build(
        tmp_path_factory,
        key,
        lambda root: write_proteins(os.path.join(root, "proteins.parquet"), n, seed=seed, min_length=40, max_length=max_length),
        ["--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--max-length", str(max_length),
         "--num-shards", str(num_shards), "--seed", str(seed)],
    )


def features_dataset(
    tmp_path_factory: Any, n: int = 200, timesteps: int = 10, dim: int = 16, num_shards: int = 2, seed: int = 0
) -> str:
    """Feature sequences in HDF5: (timesteps, dim) float32 arrays, binary labels."""
    from shardkit.convert.examples import write_feature_sequences

    key = ("features", n, timesteps, dim, num_shards, seed)
    return _build(
        tmp_path_factory,
        key,
        lambda root: write_feature_sequences(os.path.join(root, "features.h5"), n, seed=seed, timesteps=timesteps, dim=dim),
        ["--kind", "array", "--data", "/features", "--label", "/labels", "--num-shards", str(num_shards),
         "--seed", str(seed)],
    )


def record_offsets(path: str) -> list[tuple[int, int]]:
    """(offset, data length) of every record of an uncompressed TFRecord file, from its framing."""
    out, offset = [], 0
    data = Path(path).read_bytes()
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        out.append((offset, length))
        offset += 8 + 4 + length + 4
    return out
