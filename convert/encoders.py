"""Precomputed encodings: source rows (numpy blocks or lists) -> the values a record stores, plus label mapping.

Every feature encoder has one interface:

- ``feature(name)``: the ``Feature`` it writes;
- ``fields(name)``: its record keys and wire types (``records.WIRE_TYPES``), e.g. a sequence's bytes
  ``name`` and int64 ``name_length``;
- ``encode(values, rows, where)``: a block of rows of its column -> (one list of per-row values per field,
  counters for the conversion's stats); ``rows[i]`` names row i in the ``InputError`` raised when a value
  cannot be encoded (NaN, empty sequence, unknown letter under ``reject`` ...).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from shardkit.spec import AMINO_ACIDS, ENCODINGS, LENGTH_SUFFIX, Feature, Target

from .errors import InputError
from .records import BYTES, FLOAT, INT

UNKNOWN_POLICIES = ("zero", "reject")  # an unknown letter becomes code 0, or fails its row
ARRAY_DTYPES = ("float32", "float16")
SCALAR_DTYPES = ("int64", "float32")  # a scalar feature's storage: the Example's int64_list or float_list

Encoded = tuple[list[list[Any]], dict[str, int]]  # one list of per-row values per field, stats counters


class Encoder(Protocol):
    """What every feature encoder provides (see the module docstring)."""

    def feature(self, name: str) -> Feature: ...

    def fields(self, name: str) -> tuple[tuple[str, str], ...]: ...

    def encode(self, values: Any, rows: Sequence[int], where: str) -> Encoded: ...


@dataclass(frozen=True)
class ImageEncoder:
    """uint8 images of a fixed (H, W, C) shape, stored raw or as PNG; non-uint8 pixels need a scale."""

    shape: tuple[int, int, int]
    encoding: str = ENCODINGS["image"][0]
    scale: float | None = None

    def feature(self, name: str) -> Feature:
        return Feature(name=name, kind="image", shape=self.shape, dtype="uint8", encoding=self.encoding)

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((name, BYTES),)

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

    def encode(self, values: np.ndarray, rows: Sequence[int], where: str) -> Encoded:
        """A block of rows (n, ...) as uint8 images (raw bytes-like views, or PNG bytes)."""
        return [self.payloads(values, rows, where)], {}

    def payloads(self, block: np.ndarray, first_row: Sequence[int], where: str) -> list[Any]:
        """Encode a block of rows (n, ...) as uint8 images (bytes-like); ``first_row[i]`` names row i in errors."""
        block = stacked(block, first_row, where)
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

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((name, BYTES),)

    def check_source(self, where: str, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Reject sources that are not numeric arrays of ``shape``."""
        if tuple(row_shape) != tuple(self.shape):
            raise InputError(f"{where}: rows have shape {tuple(row_shape)}, expected {tuple(self.shape)}")
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
            raise InputError(f"{where}: dtype {dtype} is not numeric; --kind array needs float or integer values")

    def encode(self, values: Any, rows: Sequence[int], where: str) -> Encoded:
        """A block (n, *shape), or a list of n nested lists, as little-endian float bytes (bytes-like) per row."""
        return [self.payloads(values, rows, where)], {}

    def payloads(self, block: Any, first_row: Sequence[int], where: str) -> list[Any]:
        """Encode a block (n, *shape) as little-endian float bytes (bytes-like) per row."""
        block = stacked(block, first_row, where, self.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.asarray(block).astype("<" + np.dtype(self.dtype).str[1:], copy=False)
        bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            src_bad = not np.isfinite(np.asarray(block[i], dtype=np.float64)).all()
            what = "NaN or inf value" if src_bad else f"value out of {self.dtype} range"
            raise InputError(f"{where}, row {first_row[i]}: {what}")
        return _row_views(x)


def stacked(block: Any, rows: Sequence[int], where: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A block as one array: numpy blocks as they are; a list of per-row values (a DataFrame's list column)
    stacked, refusing the first row that is missing or has another shape than ``shape``."""
    if isinstance(block, np.ndarray):
        return block
    for i, v in enumerate(block):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise InputError(f"{where}, row {rows[i]}: missing value")
    try:
        x = np.array(block, dtype=np.float64)
    except (ValueError, TypeError):
        x = None
    want = (len(block),) + tuple(shape) if shape is not None else None
    if x is None or (want is not None and x.shape != want):
        for i, v in enumerate(block):
            try:
                got = np.shape(np.asarray(v, dtype=np.float64))
            except (ValueError, TypeError):
                raise InputError(f"{where}, row {rows[i]}: value is not a list of numbers") from None
            if shape is not None and got != tuple(shape):
                raise InputError(f"{where}, row {rows[i]}: value has shape {got}, expected {tuple(shape)}")
        raise InputError(f"{where}: rows have different shapes")
    return x


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

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((name, BYTES), (name + LENGTH_SUFFIX, INT))

    def encode(self, values: Sequence[Any], rows: Sequence[int], where: str) -> Encoded:
        """Codes and source lengths of a block of strings, with counts of truncated sequences and letters and
        of stored unknown letters."""
        lut = _lookup(self.vocabulary)
        payloads, lengths = [], []
        truncated = cut = unknown = 0
        for i, value in enumerate(values):
            payload, st = self.encode_one(value, lut, int(rows[i]), where)
            payloads.append(payload)
            lengths.append(st.length)
            truncated += st.truncated
            cut += st.cut
            unknown += st.unknown
        return [payloads, lengths], {"truncated_sequences": truncated, "truncated_letters": cut, "unknown_letters": unknown}

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


_LUTS: dict[int, np.ndarray] = {}


def _lookup(vocabulary: int) -> np.ndarray:
    if vocabulary not in _LUTS:
        _LUTS[vocabulary] = SequenceEncoder(1, vocabulary).table()
    return _LUTS[vocabulary]


@dataclass(frozen=True)
class ScalarEncoder:
    """One number per row, stored as int64 (``dtype`` "int64") or float32 ("float32"); NaN, inf and (for
    int64) fractions are errors naming the row."""

    dtype: str = "float32"

    def feature(self, name: str) -> Feature:
        return Feature(name=name, kind="scalar", shape=(), dtype=self.dtype,
                       encoding="int64" if self.dtype == "int64" else "float")

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((name, INT if self.dtype == "int64" else FLOAT),)

    def encode(self, values: Any, rows: Sequence[int], where: str) -> Encoded:
        return [numbers(values, rows, where, self.dtype).tolist()], {}


def numbers(values: Any, rows: Sequence[int], where: str, dtype: str, what: str = "value") -> np.ndarray:
    """A block of numbers (array, or list of numbers or numeric text) as ``dtype`` (int64 / float32), one per
    row; a missing, non-numeric, NaN or inf value, or a fraction for int64, is an error naming its row."""
    x = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    if x.ndim != 1:
        x = x.reshape(len(x), -1)
        if x.shape[1] != 1:
            raise InputError(f"{where}: {x.shape[1]} values per row; a scalar is one number per row")
        x = x[:, 0]
    if x.dtype.kind in "OUS":
        x = _parsed(x, rows, where, dtype, what)
    if x.dtype.kind == "b":
        x = x.astype(np.int64)
    if x.dtype.kind not in "iuf":
        raise InputError(f"{where}: {x.dtype} values are not numbers")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{where}, row {rows[i]}: {what} is {'missing (NaN)' if np.isnan(x[i]) else 'inf'}")
        if dtype == "int64":
            frac = x != np.rint(x)
            if frac.any():
                i = int(np.argmax(frac))
                raise InputError(f"{where}, row {rows[i]}: {what} {x[i].item()!r} is not an integer")
    if dtype == "int64":
        return x.astype(np.int64)
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{where}, row {rows[i]}: {what} {x[i].item()!r} is out of float32 range")
    return y


MISSING_TEXT = ("", "nan", "NaN", "NA", "null", "None")


def _parsed(x: np.ndarray, rows: Sequence[int], where: str, dtype: str, what: str) -> np.ndarray:
    """Python objects or text (a CSV read as text) as int64 when ``dtype`` is and every value is an
    integer, else as float64."""
    vals: list[Any] = []
    for i, v in enumerate(x.tolist()):
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, str):
            t = v.strip()
            if t in MISSING_TEXT:
                raise InputError(f"{where}, row {rows[i]}: {what} missing")
            try:
                v = int(t)
            except ValueError:
                try:
                    v = float(t)
                except ValueError:
                    raise InputError(f"{where}, row {rows[i]}: {what} {t!r} is not a number") from None
        elif v is None:
            raise InputError(f"{where}, row {rows[i]}: {what} missing")
        elif not isinstance(v, (int, float, np.integer, np.floating)):
            raise InputError(f"{where}, row {rows[i]}: {what} {v!r} is not a number")
        vals.append(v)
    if dtype == "int64" and all(isinstance(v, (int, np.integer)) for v in vals):
        return np.array(vals, np.int64)
    return np.array(vals, np.float64)


def category_key(value: Any) -> str | None:
    """The text a category value stands for: strings as they are, integral numbers as integers ('3' for 3 and
    3.0, so a CSV read as text agrees with the same column read as numbers); None when missing."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _integral_text(key: str) -> str:
    """'3.0' as '3' (a float column read as numbers by the driver and as text by a CSV worker), else itself."""
    try:
        x = float(key)
    except ValueError:
        return key
    return str(int(x)) if x.is_integer() else key


def sorted_categories(keys: set[str]) -> tuple[str, ...]:
    """Category order: numerically when every key is an integer, else as text."""
    try:
        return tuple(sorted(keys, key=int))
    except ValueError:
        return tuple(sorted(keys))


@dataclass(frozen=True)
class CategoryEncoder:
    """A string or integer column -> int64 index into ``categories`` (collected from the whole column by the
    driver); a missing value is an error naming the row."""

    categories: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.index.update({c: i for i, c in enumerate(self.categories)})

    def feature(self, name: str) -> Feature:
        return Feature(name=name, kind="category", shape=(), dtype="int64", encoding="index", categories=self.categories)

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((name, INT),)

    def encode(self, values: Any, rows: Sequence[int], where: str) -> Encoded:
        out = []
        for i, v in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
            key = category_key(v)
            if key is None:
                raise InputError(f"{where}, row {rows[i]}: category missing")
            if key not in self.index:
                key = _integral_text(key)
            if key not in self.index:
                raise InputError(f"{where}, row {rows[i]}: category {key!r} is not among the {len(self.categories)} "
                                 "categories collected from the input")
            out.append(self.index[key])
        return [out], {}


def label_spec(values: np.ndarray, where: str, onehot: bool = False, first_row: int = 0) -> tuple[Target, np.ndarray]:
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
    return Target(len(classes), tuple(str(int(c)) for c in classes), "int"), ids.astype(np.int64)


def merge_label_specs(specs: list[Target], where: str) -> Target:
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
    return Target(len(ordered), tuple(ordered), kind)


def _strings(values: np.ndarray, where: str, first_row: int) -> tuple[Target, np.ndarray]:
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
    return Target(len(classes), tuple(str(c) for c in classes), "string"), ids.astype(np.int64)


def _onehot(values: np.ndarray, where: str, first_row: int) -> tuple[Target, np.ndarray]:
    if values.ndim != 2:
        raise InputError(f"{where}: one-hot labels must be 2-D, got shape {values.shape}")
    v = values.astype(np.float64)
    ok = np.isin(v, (0.0, 1.0)).all(axis=1) & (v.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise InputError(f"{where}, row {first_row + i}: {values[i].tolist()} is not a one-hot label (exactly one 1, rest 0)")
    k = values.shape[1]
    return Target(k, tuple(str(c) for c in range(k)), "onehot"), np.argmax(v, axis=1).astype(np.int64)
