"""The driver's side of features: check each feature's column against the inputs and build its encoder
(image and array shapes, a sequence's longest length, a category's vocabulary, a file column's first file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import files
from .columns import Column, table_folder
from .encoders import (ArrayEncoder, CategoryEncoder, ImageEncoder, ScalarEncoder, SequenceEncoder, category_key,
                       checked_sequence, numbers, sorted_categories)
from .errors import InputError
from .sources import Source

BLOCK_ROWS = 1 << 20
BYTES_KINDS_READ = {"image": "an HDF5 array node (or, with the files option, a column of image paths)",
                    "array": "an HDF5 array node, a list column (or, with the files option, a column of .npy paths)",
                    "sequence": "a string column of a Parquet/Feather/CSV file"}


@dataclass(frozen=True)
class FeatureJob:
    """One feature as the workers write it: record key, source column/node and encoder (plain, picklable)."""

    name: str
    column: str
    encoder: Any


@dataclass(frozen=True)
class Defaults:
    """The global flags that act as every feature's options unless the feature sets its own."""

    image_shape: tuple[int, ...] | None = None
    image_encoding: str = "raw"
    image_scale: float | None = None
    max_length: int | None = None
    vocabulary: int = 20
    unknown: str = "zero"
    dtype: str = "float32"


def build(col: Column, sources: list[Source], d: Defaults, data_column: bool = False) -> FeatureJob:
    """Check feature ``col`` against every input and return its job; ``data_column`` marks the shorthand's
    ``--data`` (read with ``iter_data``, as the one-feature path always has)."""
    first = sources[0]
    where = first.where(col.column)
    if col.files:
        return FeatureJob(col.name, col.column, _file_encoder(col, sources, d))
    if col.kind == "sequence":
        for src in sources:
            if src.fmt == "hdf5":
                raise InputError(f"{src.where(col.column)}: --kind sequence reads {BYTES_KINDS_READ['sequence']}")
        max_length = col.option("max_length") or d.max_length
        if max_length is None:
            max_length = _longest(col.column, sources, data_column)
        vocab = int(col.option("vocabulary") or d.vocabulary)
        return FeatureJob(col.name, col.column, SequenceEncoder(int(max_length), vocab, col.option("unknown") or d.unknown))
    if col.kind == "scalar":
        return FeatureJob(col.name, col.column, _scalar(col, sources))
    if col.kind == "category":
        return FeatureJob(col.name, col.column, _category(col, sources))
    if col.kind == "array" and first.fmt != "hdf5":
        return FeatureJob(col.name, col.column, _list_array(col, sources, d))
    for src in sources:
        if src.fmt != "hdf5":
            raise InputError(f"{src.where(col.column)}: --kind {col.kind} reads {BYTES_KINDS_READ[col.kind]}, "
                             "not this column")
    shape, dtype = first.data_info(col.column)
    if dtype.kind in "OSUV":
        raise InputError(f"{where}: holds {dtype} values; HDF5 data must be numeric arrays")
    if col.kind == "image":
        img = col.option("shape") or d.image_shape
        if img:
            img = tuple(img)
        elif len(shape) in (2, 3):
            img = shape
        else:
            raise InputError(f"{where}: rows are flat ({shape[0] if shape else 1} values); give --image-shape H,W,C")
        if len(img) == 2:
            img = img + (1,)
        if len(img) != 3 or img[2] not in (1, 3, 4):
            raise InputError(f"{where}: image shape {img} must be H,W or H,W,C with C in 1, 3, 4")
        enc: Any = ImageEncoder(img, col.option("encoding") or d.image_encoding,
                                col.option("scale") if col.option("scale") is not None else d.image_scale)
    else:
        if not shape:
            raise InputError(f"{where}: rows are scalars; --kind array needs at least one dimension per row "
                             "(a scalar feature is kind scalar)")
        enc = ArrayEncoder(shape, col.option("dtype") or d.dtype)
    for src in sources:
        s, dt = src.data_info(col.column)
        enc.check_source(src.where(col.column), s, dt)
        if col.kind == "array" and tuple(s) != tuple(shape):
            raise InputError(f"{src.where(col.column)}: rows have shape {s}, other inputs have {shape}")
    return FeatureJob(col.name, col.column, enc)


def _longest(name: str, sources: list[Source], data_column: bool) -> int:
    """One bounded pass over a sequence column: checks every value and returns the longest length."""
    longest = 0
    for src in sources:
        where = src.where(name)
        blocks = src.iter_data() if data_column else src.column_blocks(name, BLOCK_ROWS)
        for first, values in blocks:
            for i, v in enumerate(values):
                longest = max(longest, len(checked_sequence(v, first + i, where)))
    return longest


def _scalar(col: Column, sources: list[Source]) -> ScalarEncoder:
    """int64 for integer columns, else float32 (or the dtype option); every value is checked now."""
    dtype = col.option("dtype")
    for src in sources:
        for first, values in src.column_blocks(col.column, BLOCK_ROWS):
            v = np.asarray(values)
            if dtype is None:
                dtype = "int64" if v.dtype.kind in "iub" else "float32"
            numbers(v, range(first, first + len(v)), src.where(col.column), dtype)
    return ScalarEncoder(dtype or "float32")


def _category(col: Column, sources: list[Source]) -> CategoryEncoder:
    """The sorted vocabulary of a string or integer column over every input (missing values refused)."""
    keys: set[str] = set()
    for src in sources:
        where = src.where(col.column)
        for first, values in src.column_blocks(col.column, BLOCK_ROWS):
            v = np.asarray(values)
            if v.ndim != 1:
                raise InputError(f"{where}: a category is one value per row, got shape {v.shape}")
            for i, x in enumerate(v.tolist()):
                k = category_key(x)
                if k is None:
                    raise InputError(f"{where}, row {first + i}: category missing")
                keys.add(k)
    return CategoryEncoder(sorted_categories(keys))


def _list_array(col: Column, sources: list[Source], d: Defaults) -> ArrayEncoder:
    """An array feature from a DataFrame list column: the shape option, else the first row's shape."""
    shape = col.option("shape")
    if shape is None:
        first = sources[0]
        _, values = next(first.read_rows(np.arange(1), col.column))
        try:
            shape = np.shape(np.asarray(values[0], dtype=np.float64))
        except (TypeError, ValueError):
            raise InputError(f"{first.where(col.column)}, row 0: {values[0]!r} is not a list of numbers; "
                             f"--kind array reads {BYTES_KINDS_READ['array']}") from None
        if not shape:
            raise InputError(f"{first.where(col.column)}: holds one number per row; use kind scalar")
    return ArrayEncoder(tuple(shape), col.option("dtype") or d.dtype)


def _file_encoder(col: Column, sources: list[Source], d: Defaults) -> files.FileEncoder:
    """A column of paths: the shape option (or --image-shape), else the shape of row 0's file."""
    if col.kind not in ("image", "array"):
        raise InputError(f"feature {col.name}: the files option loads images or .npy arrays; kind {col.kind} has no files")
    first = sources[0]
    for src in sources:
        if src.fmt == "hdf5":
            raise InputError(f"{src.where(col.column)}: a column of file paths lies in a Parquet/Feather/CSV table")
    bases = {table_folder(s.spec.path, s.spec.parts) for s in sources}
    if len(bases) > 1:
        raise InputError(f"feature {col.name}: inputs in different folders ({', '.join(sorted(bases))}); relative "
                         "paths need one table folder: use absolute paths or one folder")
    base = bases.pop()
    shape = col.option("shape") or (d.image_shape if col.kind == "image" else None)
    if col.kind == "image":
        channels = tuple(shape)[2] if shape and len(shape) == 3 else None
        if shape is None or len(shape) == 2:
            _, values = next(first.read_rows(np.arange(1), col.column))
            x = files.probe("image", values[0], base, 0, first.where(col.column), channels)
            shape = tuple(shape) + (x.shape[2],) if shape else x.shape
        shape = tuple(shape) if len(shape) == 3 else tuple(shape) + (1,)
        inner: Any = ImageEncoder(shape, col.option("encoding") or d.image_encoding)
    else:
        if shape is None:
            _, values = next(first.read_rows(np.arange(1), col.column))
            shape = files.probe("array", values[0], base, 0, first.where(col.column)).shape
            if not shape:
                raise InputError(f"{first.where(col.column)}, row 0: the .npy file holds one number; an array feature "
                                 "needs at least one dimension")
        inner = ArrayEncoder(tuple(shape), col.option("dtype") or d.dtype)
    return files.FileEncoder(inner, base)


def feature_bytes(job: FeatureJob, src: Source) -> float:
    """Stored bytes of one record's feature, for shard sizing: PNG images by a sample of 32 rows."""
    enc = job.encoder
    inner = enc.inner if isinstance(enc, files.FileEncoder) else enc
    if isinstance(enc, SequenceEncoder):
        return enc.max_length
    if isinstance(inner, ImageEncoder) and inner.encoding == "png":
        rows = np.arange(min(32, src.num_rows))
        sizes = [len(p) for r, v in src.read_rows(rows, job.column) for p in enc.encode(v, r, "")[0][0]]
        return float(np.mean(sizes))
    if isinstance(enc, (ScalarEncoder, CategoryEncoder)):
        return 12.0
    return enc.feature("x").raw_nbytes


def input_bytes(job: FeatureJob, src: Source) -> int:
    """Source bytes of one row's feature, for the progress line's input MB/s."""
    enc = job.encoder
    if isinstance(enc, SequenceEncoder):
        return enc.max_length
    if isinstance(enc, files.FileEncoder):
        return enc.feature("x").raw_nbytes
    shape, dtype = src.data_info(job.column)
    return int(np.prod(shape or (1,))) * dtype.itemsize
