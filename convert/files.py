"""File-path columns: a table whose column holds paths (relative to the table's folder, absolute, or any Beam
FileSystems URL) of PNG/JPEG images or .npy arrays, loaded by the Beam workers.

Images keep their size: one of another size than the feature's shape is refused, naming the row and the
file (resize them beforehand, or convert them as separate datasets). Their colour mode is converted to the
shape's channels (1: L, 3: RGB, 4: RGBA). A missing or unreadable file is an error naming row and path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from shardkit.spec import Feature, is_remote

from .encoders import Encoded, ImageEncoder
from .errors import InputError

MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def resolve(path: str, base: str) -> str:
    """``path`` as written in the table, resolved against the table's folder ``base`` when relative."""
    import os

    if is_remote(path) or path.startswith("file://") or os.path.isabs(path):
        return path
    if is_remote(base):
        return base.rstrip("/") + "/" + path
    return os.path.join(base, path)


def read_file(value: Any, base: str, row: int, where: str) -> tuple[str, bytes]:
    """(resolved path, contents) of the file named by one table value; errors name the row and the path."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}, row {row}: file path missing")
    if not isinstance(value, str):
        raise InputError(f"{where}, row {row}: {value!r} is not a file path")
    path = resolve(value.strip(), base)
    from .sources import open_binary

    try:
        with open_binary(path) as f:
            return path, f.read()
    except FileNotFoundError:
        raise InputError(f"{where}, row {row}: {path}: no such file") from None
    except OSError as e:
        raise InputError(f"{where}, row {row}: {path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - Beam's filesystems raise their own types for missing objects
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{where}, row {row}: {path}: cannot read: {first}") from None


def decode_image(data: bytes, path: str, row: int, where: str, channels: int | None) -> np.ndarray:
    """An 8-bit image file's pixels as (H, W, C) uint8, its mode converted to ``channels`` (None: keep RGB,
    RGBA or L as they are, other modes become RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = MODES.get(channels or 0) or (img.mode if img.mode in ("L", "RGB", "RGBA") else
                                                 "RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
            if img.mode in ("I", "I;16", "I;16B", "F") and mode != img.mode:
                raise InputError(f"{where}, row {row}: {path}: {img.mode} pixels are not 8-bit; save it as 8-bit")
            x = np.asarray(img.convert(mode) if img.mode != mode else img, dtype=np.uint8)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{where}, row {row}: {path}: not a readable image ({e})") from None
    return x.reshape(x.shape[0], x.shape[1], -1)


def decode_npy(data: bytes, path: str, row: int, where: str) -> np.ndarray:
    """The array in a .npy file (no pickled objects)."""
    try:
        x = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{where}, row {row}: {path}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputError(f"{where}, row {row}: {path}: holds {getattr(x, 'dtype', type(x).__name__)} values, not numbers")
    return x


def probe(kind: str, value: Any, base: str, row: int, where: str, channels: int | None = None) -> np.ndarray:
    """Load the file of one row (the driver does it for the first row to learn the feature's shape)."""
    path, data = read_file(value, base, row, where)
    return decode_image(data, path, row, where, channels) if kind == "image" else decode_npy(data, path, row, where)


@dataclass(frozen=True)
class FileEncoder:
    """A column of file paths: loads each row's file and encodes it with ``inner`` (an ImageEncoder for
    PNG/JPEG images, an ArrayEncoder for .npy arrays); same interface as every encoder."""

    inner: Any
    base: str

    def feature(self, name: str) -> Feature:
        return self.inner.feature(name)

    def fields(self, name: str) -> tuple[tuple[str, str], ...]:
        return self.inner.fields(name)

    def encode(self, values: Any, rows: Sequence[int], where: str) -> Encoded:
        shape = tuple(self.inner.shape)
        image = isinstance(self.inner, ImageEncoder)
        block = np.empty((len(values),) + shape, np.uint8 if image else np.float64)
        for i, value in enumerate(values):
            row = int(rows[i])
            path, data = read_file(value, self.base, row, where)
            if image:
                x = decode_image(data, path, row, where, shape[2])
                if x.shape != shape:
                    raise InputError(f"{where}, row {row}: {path} is {x.shape[1]}x{x.shape[0]} pixels, but the "
                                     f"feature's images are {shape[1]}x{shape[0]}; resize the files to one size")
            else:
                x = decode_npy(data, path, row, where)
                if x.shape != shape:
                    raise InputError(f"{where}, row {row}: {path} holds shape {x.shape}, expected {shape}")
            block[i] = x
        return self.inner.encode(block, rows, where)

