"""TFRecord shard files written without TensorFlow: tf.train.Example wire bytes (any number of bytes, int64 and
float features) and TFRecord framing.

Workers stay TensorFlow-free (importing it in every worker costs memory and start-up time); the bytes produced equal
``shardkit.spec.example_bytes`` (deterministic protobuf serialisation) and TFRecordWriter's framing,
which tests/test_convert_records.py checks.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import uuid
from typing import Any, BinaryIO, Sequence, Union

import crc32c
import numpy as np

from shardkit.spec import is_remote

Buffer = Union[bytes, memoryview]
COMPRESSIONS = {"none": None, "gzip": "GZIP"}  # command-line name -> TFRecord compression type


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _BYTES[value]
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _key_order(a: str, b: str) -> int:
    """upb's deterministic map order for string keys: bytewise, but a key sorts after its own extensions."""
    x, y = a.encode(), b.encode()
    n = min(len(x), len(y))
    if x[:n] != y[:n]:
        return -1 if x[:n] < y[:n] else 1
    return len(y) - len(x)


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    return _mask(crc32c.crc32c(data))


BYTES, INT, INTS, FLOAT, FLOATS = "bytes", "int", "ints", "float", "floats"
WIRE_TYPES = (BYTES, INT, INTS, FLOAT, FLOATS)  # one bytes value, one / several int64, one / several float32


def _packed(values: Any, kind: str) -> bytes:
    """The packed field 1 of an Int64List / FloatList holding ``values`` (nothing for no values)."""
    if kind == INT:
        data = _varint(values)
    elif kind == FLOAT:
        data = struct.pack("<f", values)
    elif kind == INTS:
        data = b"".join([_varint(int(v)) for v in values])
        if not data:
            return b""
    else:
        data = np.asarray(values, "<f4").tobytes()
        if not data:
            return b""
    return b"\n" + _varint(len(data)) + data


class ExampleLayout:
    """Serialises examples of the given fields, ``(key, wire type)`` pairs, wire types from ``WIRE_TYPES``.

    ``pieces(values)`` (values in field order: a bytes-like object, a number, or a sequence of numbers)
    returns the record as head, payload, middle, payload, ..., tail pieces, so bytes payloads are never
    copied; key order and entry prefixes are computed once.
    """

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self.fields = tuple((str(k), t) for k, t in fields)
        names = [k for k, _ in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"record keys {names} are not unique")
        for k, t in self.fields:
            if t not in WIRE_TYPES:
                raise ValueError(f"record key {k!r}: wire type {t!r} is not one of {WIRE_TYPES}")
        order = sorted(range(len(names)), key=functools.cmp_to_key(lambda i, j: _key_order(names[i], names[j])))
        self._keys = [_field(1, k.encode()) for k in names]
        self._types = [t for _, t in self.fields]
        segments, before = [], []
        for i in order:
            if self._types[i] == BYTES:
                segments.append((tuple(before), i))
                before = []
            else:
                before.append(i)
        self._segments = segments
        self._tail = tuple(before)
        self._prefix: dict[tuple[int, int], bytes] = {}
        self._single = len(segments) == 1 and all(self._types[i] == INT for i in (*segments[0][0], *self._tail))

    def _payload_prefix(self, i: int, n: int) -> bytes:
        """Everything of bytes field ``i``'s map entry before its ``n`` payload bytes."""
        prefix = self._prefix.get((i, n))
        if prefix is None:
            key = self._keys[i]
            bytes_list_len = 1 + len(_varint(n)) + n
            feature_len = 1 + len(_varint(bytes_list_len)) + bytes_list_len
            content_len = len(key) + 1 + len(_varint(feature_len)) + feature_len
            prefix = (b"\n" + _varint(content_len) + key + b"\x12" + _varint(feature_len) + b"\n"
                      + _varint(bytes_list_len) + b"\n" + _varint(n))
            self._prefix[(i, n)] = prefix
        return prefix

    def _int_entry(self, i: int, value: int) -> bytes:
        vb = _varint(value)
        il = b"\n" + _BYTES[len(vb)] + vb
        ft = b"\x1a" + _BYTES[len(il)] + il
        content = self._keys[i] + b"\x12" + _BYTES[len(ft)] + ft
        return b"\n" + _varint(len(content)) + content

    def _entry(self, i: int, value: Any) -> bytes:
        kind = self._types[i]
        if kind == INT:
            return self._int_entry(i, value)
        packed = _packed(value, kind)
        ft = (b"\x1a" if kind in (INT, INTS) else b"\x12") + _varint(len(packed)) + packed
        content = self._keys[i] + b"\x12" + _varint(len(ft)) + ft
        return b"\n" + _varint(len(content)) + content

    def pieces(self, values: Sequence[Any]) -> tuple[Buffer, ...]:
        """One example as (head, payload, ..., payload, tail); a layout without bytes fields gives (record,)."""
        if self._single:  # one payload among int64 scalars: the common case, kept short
            before, at = self._segments[0]
            payload = values[at]
            head = b"".join([self._int_entry(i, values[i]) for i in before]) + self._payload_prefix(at, len(payload))
            tail = b"".join([self._int_entry(i, values[i]) for i in self._tail])
            return b"\n" + _varint(len(head) + len(payload) + len(tail)) + head, payload, tail
        out: list[Buffer] = []
        for before, at in self._segments:
            payload = values[at]
            out.append(b"".join([self._entry(i, values[i]) for i in before]) + self._payload_prefix(at, len(payload)))
            out.append(payload)
        out.append(b"".join([self._entry(i, values[i]) for i in self._tail]))
        total = sum(len(p) for p in out)
        out[0] = b"\n" + _varint(total) + out[0]
        return tuple(out)


_BYTES = [bytes((i,)) for i in range(256)]


def frame_pieces(*pieces: Buffer) -> tuple[Buffer, ...]:
    """TFRecord framing of a record given as pieces (``ExampleLayout.pieces``), again without copying payloads."""
    length = struct.pack("<Q", sum(len(p) for p in pieces))
    crc = 0
    for p in pieces:
        crc = crc32c.crc32c(p, crc)
    head = length + struct.pack("<I", _masked_crc(length))
    end = struct.pack("<I", _mask(crc))
    if len(pieces) == 1:
        return (head + bytes(pieces[0]) + end,)
    return (head + pieces[0], *pieces[1:-1], bytes(pieces[-1]) + end)


class ShardWriter:
    """Write one TFRecord shard (optionally GZIP); a local one goes to a temporary name, moved into place on close.

    Local paths use plain files; other schemes (gs://, s3://) go through Beam's FileSystems and are written
    under their final name: an object appears whole when its upload completes, and it lies in the
    conversion's temporary prefix anyway, so a rename (a copy on object stores) would buy nothing.
    """

    def __init__(self, path: str, compression: str | None = None) -> None:
        self.path = path
        self._tmp = f"{path}.inprogress-{uuid.uuid4().hex[:8]}" if not is_remote(path) else path
        self.size = 0
        if not is_remote(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._raw: Any = open(self._tmp, "wb", buffering=1 << 20)
        else:
            from apache_beam.io.filesystems import CompressionTypes, FileSystems

            self._raw = FileSystems.create(self._tmp, compression_type=CompressionTypes.UNCOMPRESSED)
        self._gz = None
        if compression == "GZIP":
            self._gz = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=self._raw, mtime=0)
        self._out: BinaryIO = self._gz or self._raw
        self.crc32c = 0  # running CRC32C of the uncompressed bytes written: the shard's content checksum

    def write_pieces(self, *pieces: Buffer) -> None:
        """Append one record given as its pieces (``ExampleLayout.pieces``)."""
        for piece in frame_pieces(*pieces):
            self._out.write(piece)
            self.crc32c = crc32c.crc32c(piece, self.crc32c)
            self.size += len(piece)

    def close(self) -> int:
        """Finish the file, move it to its final name and return its size in bytes."""
        if self._gz is not None:
            self._gz.close()
        self._raw.close()
        if not is_remote(self.path):
            os.replace(self._tmp, self.path)
            return os.path.getsize(self.path)
        if self._gz is None:
            return self.size
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.match([self.path])[0].metadata_list[0].size_in_bytes

    def abort(self) -> None:
        """Drop the partial file."""
        for stream in (self._gz, self._raw):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass
        try:
            if not is_remote(self.path):
                os.remove(self._tmp)
            else:
                from apache_beam.io.filesystems import FileSystems

                FileSystems.delete([self._tmp])
        except (OSError, IOError):
            pass
