"""The converter writes Example bytes and TFRecord framing without TensorFlow: they must equal TensorFlow's."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import tensorflow as tf

from shardkit import spec
from shardkit.convert.records import ExampleLayout, ShardWriter

CASES = [
    ("image", ("label", "row_id"), [(b"\x00\x01\x02" * 5, (0, 0)), (bytes(49152), (2, 299_999))]),
    ("sequence", ("label", "row_id", "sequence_length"), [(b"\x01" * 660, (6, 431_402, 1000)), (b"\x05", (1, 2**40, 1))]),
    ("array", ("label", "row_id"), [(np.arange(200, dtype=np.float32).tobytes(), (1, 127)), (b"\xff" * 130, (0, 128))]),
]


def _fields(name: str, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, "bytes")] + [(k, "int") for k in keys]


@pytest.mark.parametrize("name,keys,rows", CASES, ids=[c[0] for c in CASES])
def test_example_pieces_equal_tf_train_example_bytes(name: str, keys: tuple[str, ...], rows: list) -> None:
    layout = ExampleLayout(_fields(name, keys))
    for payload, values in rows:
        head, body, tail = layout.pieces((payload, *values))
        assert bytes(head) + bytes(body) + bytes(tail) == spec.example_bytes({name: payload}, dict(zip(keys, values)))


# every feature kind (image, sequence + length, array, scalar int64 and float, category) and target kind (class,
# multilabel, regression scalar and vector) in one record, with keys whose order is not their field order
EVERY_KIND = [("image", "bytes"), ("sequence", "bytes"), ("sequence_length", "int"), ("array", "bytes"),
              ("count", "int"), ("weight", "float"), ("family", "int"), ("ec_lvl_1", "int"), ("ec", "int"),
              ("tags", "ints"), ("stability", "float"), ("shift", "floats"), ("row_id", "int")]
EVERY_ROWS = [
    (memoryview(bytes(range(256)) * 3), b"\x01\x02" * 330, 660, np.arange(6, dtype=np.float16).tobytes(), -3, 0.1,
     2, 6, 0, [0, 1, 1, 0, 1], -1e30, [1.5, -2.25, 3e-38], 2**40),
    (b"", b"\x07", 1, b"\x00" * 4, 2**62, float("inf"), 0, 0, 18, [1], 0.0, [0.0, 0.0, 0.0], 0),
]


def test_every_kind_in_one_record_equals_tf_train_example_bytes() -> None:
    layout = ExampleLayout(EVERY_KIND)
    for values in EVERY_ROWS:
        pieces = layout.pieces(values)
        assert len(pieces) == 7  # head, three payloads passed through uncopied, two middles, tail
        payloads = [v for (_, t), v in zip(EVERY_KIND, values) if t == "bytes"]
        assert all(any(p is v for p in pieces[1::2]) for v in payloads)  # the very objects, not copies
        payload = {k: bytes(v) for (k, t), v in zip(EVERY_KIND, values) if t == "bytes"}
        ints = {k: v for (k, t), v in zip(EVERY_KIND, values) if t in ("int", "ints")}
        floats = {k: v for (k, t), v in zip(EVERY_KIND, values) if t in ("float", "floats")}
        assert b"".join(bytes(p) for p in pieces) == spec.example_bytes(payload, ints, floats)


def test_record_without_bytes_features_is_one_piece() -> None:
    layout = ExampleLayout([("x", "float"), ("y", "ints"), ("row_id", "int")])
    (record,) = layout.pieces((0.25, [3, 0, 1], 7))
    assert record == spec.example_bytes({}, {"y": [3, 0, 1], "row_id": 7}, {"x": 0.25})


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_shard_writer_file_equals_tfrecordwriter_file(tmp_path, compression: str | None) -> None:
    name, keys, rows = CASES[1]
    layout = ExampleLayout(_fields(name, keys))
    ours = str(tmp_path / "ours.tfrecord")
    writer = ShardWriter(ours, compression)
    for payload, values in rows:
        writer.write_pieces(*layout.pieces((payload, *values)))
    several = ExampleLayout(EVERY_KIND)
    for values in EVERY_ROWS:
        writer.write_pieces(*several.pieces(values))
    size = writer.close()
    theirs = str(tmp_path / "theirs.tfrecord")
    with tf.io.TFRecordWriter(theirs) as w:
        for payload, values in rows:
            w.write(spec.example_bytes({name: payload}, dict(zip(keys, values))))
        for values in EVERY_ROWS:
            w.write(b"".join(bytes(p) for p in several.pieces(values)))
    with open(ours, "rb") as f:
        written = f.read()
    assert size == len(written)
    with open(theirs, "rb") as f:
        assert (gzip.decompress(written) if compression else written) == f.read()
