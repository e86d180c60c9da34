"""Precomputed encodings: source rows (numpy blocks or strings) -> payload bytes, plus label mapping.

Each encoder turns a block of rows into one bytes payload per row and raises ``InputError`` naming the
row when a value cannot be encoded (NaN, empty sequence, unknown letter under ``reject`` ...).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from shardkit.spec import AMINO_ACIDS, ENCODINGS, Feature, LabelSpec

from .errors import InputError

UNKNOWN_POLICIES = ("zero", "reject")  # an unknown letter becomes code 0, or fails its row
ARRAY_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class ImageEncoder:
    """uint8 images of a fixed (H, W, C) shape, stored raw or as PNG; non-uint8 pixels need a scale."""

    shape: tuple[int, int, int]
    encoding: str = ENCODINGS["image"][0]
    scale: float | None = None

    def feature(self, name: str) -> Feature:
        return Feature(name=name, kind="image", shape=self.shape, dtype="uint8", encoding=self.encoding)

    def check_source(self, where: str, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Reject a source whose rows cannot become ``shape`` uint8 images."""
        if int(np.prod(row_shape)) != int(np.prod(self.shape)) or len(row_shape) not in (1, 2, 3):
            raise InputError(
                f"{where}: rows have shape {tuple(row_shape)}, which does not fit --image-shape "
                f"{','.join(map(str, self.shape))} ({int(np.prod(self.shape))} values per row)"
            )
        if dtype != np.uint8 and self.scale is None:
            kind = "float" if np.issubdtype(dtype, np.floating) else str(dtype)
            raise InputError(f"{where}: {kind} pixels ({dtype}) need an explicit --image-scale (uint8 = round(x * S))")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
            raise InputError(f"{where}: dtype {dtype} is not a numeric image type")

    def encode(self, block: np.ndarray, first_row: Sequence[int], where: str) -> list[Any]:
        """Encode a block of rows (n, ...) as uint8 images (bytes-like); ``first_row[i]`` names row i in errors."""
        x = block.reshape((len(block),) + self.shape)
        if x.dtype != np.uint8:
            xf = x.astype(np.float64) * float(self.scale or 1.0)
            bad = ~np.isfinite(xf).reshape(len(xf), -1).all(axis=1)
            if bad.any():
                raise InputError(f"{where}, row {first_row[int(np.argmax(bad))]}: NaN or inf pixel value")
            x = np.clip(np.rint(xf), 0, 255).astype(np.uint8)
        if self.encoding == "png":
            return [_png(img) for img in x]
        return _row_views(x)


def _row_views(x: np.ndarray) -> list[memoryview]:
    """Zero-copy byte views of each row of a block."""
    flat = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint8)
    return [memoryview(row) for row in flat]


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[img.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(img if img.shape[2] != 1 else img[:, :, 0], mode=mode).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


@dataclass(frozen=True)
class ArrayEncoder:
    """Dense float arrays of a fixed shape as float32 (or float16) raw bytes; NaN/inf are errors."""

    shape: tuple[int, ...]
    dtype: str = ARRAY_DTYPES[0]

    def feature(self, name: str) -> Feature:
        return Feature(name=name, kind="array", shape=self.shape, dtype=self.dtype, encoding="raw")

    def check_source(self, where: str, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Reject sources that are not numeric arrays of ``shape``."""
        if tuple(row_shape) != tuple(self.shape):
            raise InputError(f"{where}: rows have shape {tuple(row_shape)}, expected {tuple(self.shape)}")
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
            raise InputError(f"{where}: dtype {dtype} is not numeric; --kind array needs float or integer values")

    def encode(self, block: np.ndarray, first_row: Sequence[int], where: str) -> list[Any]:
        """Encode a block (n, *shape) as little-endian float bytes (bytes-like) per row."""
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.asarray(block).astype("<" + np.dtype(self.dtype).str[1:], copy=False)
        bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            src_bad = not np.isfinite(np.asarray(block[i], dtype=np.float64)).all()
            what = "NaN or inf value" if src_bad else f"value out of {self.dtype} range"
            raise InputError(f"{where}, row {first_row[i]}: {what}")
        return _row_views(x)


def checked_sequence(value: Any, row: int, where: str) -> str:
    """``value`` if it is a non-empty string; otherwise the InputError naming the row (missing, not text, empty)."""
    if not isinstance(value, str):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise InputError(f"{where}, row {row}: missing sequence")
        raise InputError(f"{where}, row {row}: expected a string, got {type(value).__name__}")
    if not value:
        raise InputError(f"{where}, row {row}: empty sequence")
    return value


@dataclass(frozen=True)
class SequenceStats:
    """One encoded sequence: its source length, whether --max-length cut it, the unknown letters among the
    stored letters (stored as code 0) and how many letters were cut off."""

    length: int
    truncated: bool
    unknown: int
    cut: int = 0


@dataclass(frozen=True)
class SequenceEncoder:
    """Amino-acid strings -> uint8 codes 1..V (0 = padding/unknown), case folded, 'post' pad/truncate."""

    max_length: int
    vocabulary: int = min(AMINO_ACIDS)
    unknown: str = UNKNOWN_POLICIES[0]

    @property
    def letters(self) -> str:
        return AMINO_ACIDS[self.vocabulary]

    def feature(self, name: str) -> Feature:
        return Feature(
            name=name, kind="sequence", shape=(self.max_length,), dtype="uint8", encoding="codes",
            vocabulary=self.letters,
        )

    def table(self) -> np.ndarray:
        """Lookup table byte -> code."""
        lut = np.zeros(256, dtype=np.uint8)
        for i, ch in enumerate(self.letters, start=1):
            lut[ord(ch)] = i
            lut[ord(ch.lower())] = i
        return lut

    def encode_one(self, value: Any, lut: np.ndarray, row: int, where: str) -> tuple[bytes, SequenceStats]:
        """Encode one sequence; returns the padded codes and its stats (unknown letters counted among the
        stored ones; ``--unknown reject`` refuses an unknown letter anywhere in the source value)."""
        value = checked_sequence(value, row, where)
        if value.isascii():
            codes = lut[np.frombuffer(value.encode("ascii"), dtype=np.uint8)]
        else:
            codes = np.array([lut[ord(c)] if ord(c) < 256 else 0 for c in value], dtype=np.uint8)
        unknown = int(len(codes) - np.count_nonzero(codes))
        if unknown and self.unknown == "reject":
            pos = int(np.argmin(codes != 0))
            raise InputError(
                f"{where}, row {row}: letter {value[pos]!r} at position {pos} is not in the {self.vocabulary}-letter "
                "vocabulary (--unknown reject)"
            )
        out = np.zeros(self.max_length, dtype=np.uint8)
        n = min(len(codes), self.max_length)
        out[:n] = codes[:n]
        stored_unknown = unknown if n == len(codes) else int(n - np.count_nonzero(codes[:n]))
        return out.tobytes(), SequenceStats(len(codes), len(codes) > n, stored_unknown, len(codes) - n)


def label_spec(values: np.ndarray, where: str, onehot: bool = False, first_row: int = 0) -> tuple[LabelSpec, np.ndarray]:
    """Map a label column to 0..K-1: integers in any range, strings (class names) or one-hot rows.

    Returns the spec (names[i] = source value of class i) and the int64 class ids. ``values`` may be a
    block of a longer column starting at ``first_row``, which messages count from.
    """
    if onehot or (values.ndim == 2 and values.shape[1] > 1):
        return _onehot(values, where, first_row)
    if values.ndim != 1 and not (values.ndim == 2 and values.shape[1] == 1):
        raise InputError(f"{where}: labels must be one value per row or one-hot rows, got shape {values.shape}")
    values = values.reshape(-1)
    if values.dtype.kind in "OUS":
        return _strings(values, where, first_row)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(f"{where}, row {first_row + int(np.argmax(bad))}: label missing (NaN)")
        frac = values != np.rint(values)
        if frac.any():
            i = int(np.argmax(frac))
            raise InputError(f"{where}, row {first_row + i}: label {values[i].item()!r} is not an integer")
        values = values.astype(np.int64)
    elif values.dtype.kind == "b":
        values = values.astype(np.int64)
    elif values.dtype.kind not in "iu":
        raise InputError(f"{where}: labels of dtype {values.dtype} are not integers, strings or one-hot rows")
    classes, ids = np.unique(values, return_inverse=True)
    return LabelSpec(len(classes), tuple(str(int(c)) for c in classes), "int"), ids.astype(np.int64)


def merge_label_specs(specs: list[LabelSpec], where: str) -> LabelSpec:
    """One vocabulary for blocks (or inputs) mapped separately, ordered as ``label_spec`` orders classes."""
    kinds = sorted({s.source_kind for s in specs})
    if len(kinds) > 1:
        raise InputError(f"{where}: labels mix kinds {kinds}; use one of integers, class names or one-hot rows")
    kind = kinds[0]
    if kind == "onehot":
        widths = sorted({s.num_classes for s in specs})
        if len(widths) > 1:
            raise InputError(f"{where}: one-hot labels have different widths {widths}")
        return specs[0]
    names = set().union(*(s.names for s in specs))
    ordered = sorted(names, key=int) if kind == "int" else sorted(names)
    return LabelSpec(len(ordered), tuple(ordered), kind)


def _strings(values: np.ndarray, where: str, first_row: int) -> tuple[LabelSpec, np.ndarray]:
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise InputError(f"{where}, row {first_row + i}: label missing")
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if not isinstance(v, str):
            if isinstance(v, (int, np.integer)):
                v = str(int(v))
            else:
                raise InputError(f"{where}, row {first_row + i}: label {v!r} is neither an integer nor a class name")
        out.append(v)
    classes, ids = np.unique(np.array(out, dtype=object).astype(str), return_inverse=True)
    return LabelSpec(len(classes), tuple(str(c) for c in classes), "string"), ids.astype(np.int64)


def _onehot(values: np.ndarray, where: str, first_row: int) -> tuple[LabelSpec, np.ndarray]:
    if values.ndim != 2:
        raise InputError(f"{where}: one-hot labels must be 2-D, got shape {values.shape}")
    v = values.astype(np.float64)
    ok = np.isin(v, (0.0, 1.0)).all(axis=1) & (v.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise InputError(f"{where}, row {first_row + i}: {values[i].tolist()} is not a one-hot label (exactly one 1, rest 0)")
    k = values.shape[1]
    return LabelSpec(k, tuple(str(c) for c in range(k)), "onehot"), np.argmax(v, axis=1).astype(np.int64)
