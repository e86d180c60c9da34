"""Storage: bytes per example of each shardkit encoding, measured on converted datasets, against the naive
float one-hot / float image arrays the seed users kept in memory or on disk."""

from __future__ import annotations

from typing import Any

import numpy as np

from shardkit.spec import read_metadata

from . import datasets

SEED001_SEQUENCES = 431_403
SEED001_LENGTH = 660
ONEHOT_DEPTH = 21  # to_categorical of codes 0..20


def bytes_per_example(dataset_dir: str) -> dict[str, Any]:
    """Total shard bytes over all splits divided by the example count, from metadata.json."""
    meta = read_metadata(dataset_dir)
    count = sum(s.count for s in meta.splits.values())
    total = sum(sh.bytes for s in meta.splits.values() for sh in s.shards)
    feature = meta.features[0]
    return {
        "examples": count,
        "bytes_total": total,
        "bytes_per_example": total / count,
        "payload_bytes_per_example": feature.raw_nbytes,
        "compression": meta.compression or "none",
        "feature": f"{feature.kind}/{feature.encoding}/{feature.dtype}{list(feature.shape)}",
    }


def naive_onehot_bytes(length: int = SEED001_LENGTH, dtype: str = "float32") -> int:
    """Bytes of one seed-001 style one-hot sequence: length x 21 floats."""
    return length * ONEHOT_DEPTH * np.dtype(dtype).itemsize


def measure(cache: str, n_images: int, n_sequences: int, n_arrays: int) -> dict[str, Any]:
    """Convert each encoding once and report bytes per example, naive baselines and the seed-001 projection."""
    encodings = {
        "image raw uint8": datasets.knots_dataset(cache, n_images),
        "image PNG": datasets.knots_dataset(cache, n_images, extra=["--image-encoding", "png"], tag="-png"),
        "amino-acid codes": datasets.proteins_dataset(cache, n_sequences),
        "amino-acid codes + GZIP": datasets.proteins_dataset(cache, n_sequences, extra=["--compression", "gzip"],
                                                             tag="-gz"),
        "array float32": datasets.features_dataset(cache, n_arrays),
        "array float16": datasets.features_dataset(cache, n_arrays, extra=["--dtype", "float16"], tag="-f16"),
    }
    rows = {name: bytes_per_example(path) for name, path in encodings.items()}
    image_pixels = int(np.prod(read_metadata(encodings["image raw uint8"]).features[0].shape))
    naive = {
        "one-hot float32 (seed 001, to_categorical)": naive_onehot_bytes(dtype="float32"),
        "one-hot float64 (seed 001 generator, np.empty)": naive_onehot_bytes(dtype="float64"),
        "image float32 (/255 in numpy)": image_pixels * 4,
        "image float64 (seed 000, X/255)": image_pixels * 8,
    }
    codes = rows["amino-acid codes"]["bytes_per_example"]
    codes_gz = rows["amino-acid codes + GZIP"]["bytes_per_example"]
    projection = {
        "sequences": SEED001_SEQUENCES,
        "length": SEED001_LENGTH,
        "one-hot float64": SEED001_SEQUENCES * naive_onehot_bytes(dtype="float64"),
        "one-hot float32": SEED001_SEQUENCES * naive_onehot_bytes(dtype="float32"),
        "shardkit codes": SEED001_SEQUENCES * codes,
        "shardkit codes + GZIP": SEED001_SEQUENCES * codes_gz,
    }
    return {
        "encodings": rows,
        "naive": naive,
        "seed001_projection": projection,
        "codes_over_onehot_float32": codes / naive_onehot_bytes(dtype="float32"),
    }
