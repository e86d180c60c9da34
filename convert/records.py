"""TFRecord shard files written without TensorFlow: tf.train.Example wire bytes and TFRecord framing.

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
from typing import Any, BinaryIO, Union

import crc32c

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


class ExampleLayout:
    """Serialises examples with one bytes payload ``name`` and int64 features ``int_keys`` as
    (head, payload, tail) pieces, so the payload is never copied; key order and prefixes are computed once."""

    def __init__(self, name: str, int_keys: tuple[str, ...]) -> None:
        self.int_keys = tuple(int_keys)
        order = sorted([name, *self.int_keys], key=functools.cmp_to_key(_key_order))
        at = order.index(name)
        pos = {k: i for i, k in enumerate(self.int_keys)}
        self._before = [pos[k] for k in order[:at]]
        self._after = [pos[k] for k in order[at + 1 :]]
        self._keys = [_field(1, k.encode()) for k in self.int_keys]
        self._name_key = _field(1, name.encode())
        self._prefix: dict[int, bytes] = {}

    def _payload_prefix(self, n: int) -> bytes:
        prefix = self._prefix.get(n)
        if prefix is None:
            bytes_list_len = 1 + len(_varint(n)) + n
            feature_len = 1 + len(_varint(bytes_list_len)) + bytes_list_len
            content_len = len(self._name_key) + 1 + len(_varint(feature_len)) + feature_len
            prefix = (b"\n" + _varint(content_len) + self._name_key + b"\x12" + _varint(feature_len) + b"\n"
                      + _varint(bytes_list_len) + b"\n" + _varint(n))
            self._prefix[n] = prefix
        return prefix

    def _int_entry(self, i: int, value: int) -> bytes:
        vb = _varint(value)
        il = b"\n" + _BYTES[len(vb)] + vb
        ft = b"\x1a" + _BYTES[len(il)] + il
        content = self._keys[i] + b"\x12" + _BYTES[len(ft)] + ft
        return b"\n" + _varint(len(content)) + content

    def pieces(self, payload: Buffer, values: tuple[int, ...]) -> tuple[bytes, Buffer, bytes]:
        """(head, payload, tail) of one example; ``values`` follow ``int_keys``."""
        before = b"".join([self._int_entry(i, values[i]) for i in self._before])
        after = b"".join([self._int_entry(i, values[i]) for i in self._after])
        prefix = self._payload_prefix(len(payload))
        total = len(before) + len(prefix) + len(payload) + len(after)
        return b"\n" + _varint(total) + before + prefix, payload, after


_BYTES = [bytes((i,)) for i in range(256)]


def frame_pieces(head: bytes, payload: Buffer, tail: bytes) -> tuple[bytes, Buffer, bytes]:
    """TFRecord framing of the record head + payload + tail, again without copying the payload."""
    length = struct.pack("<Q", len(head) + len(payload) + len(tail))
    crc = crc32c.crc32c(tail, crc32c.crc32c(payload, crc32c.crc32c(head)))
    return length + struct.pack("<I", _masked_crc(length)) + head, payload, tail + struct.pack("<I", _mask(crc))


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

    def write_pieces(self, head: bytes, payload: Buffer, tail: bytes) -> None:
        """Append one record given as head + payload + tail (``ExampleLayout.pieces``)."""
        for piece in frame_pieces(head, payload, tail):
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
