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


@pytest.mark.parametrize("name,keys,rows", CASES, ids=[c[0] for c in CASES])
def test_example_pieces_equal_tf_train_example_bytes(name: str, keys: tuple[str, ...], rows: list) -> None:
    layout = ExampleLayout(name, keys)
    for payload, values in rows:
        head, body, tail = layout.pieces(payload, values)
        assert bytes(head) + bytes(body) + bytes(tail) == spec.example_bytes({name: payload}, dict(zip(keys, values)))


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_shard_writer_file_equals_tfrecordwriter_file(tmp_path, compression: str | None) -> None:
    name, keys, rows = CASES[1]
    layout = ExampleLayout(name, keys)
    ours = str(tmp_path / "ours.tfrecord")
    writer = ShardWriter(ours, compression)
    for payload, values in rows:
        writer.write_pieces(*layout.pieces(payload, values))
    size = writer.close()
    theirs = str(tmp_path / "theirs.tfrecord")
    with tf.io.TFRecordWriter(theirs) as w:
        for payload, values in rows:
            w.write(spec.example_bytes({name: payload}, dict(zip(keys, values))))
    with open(ours, "rb") as f:
        written = f.read()
    assert size == len(written)
    with open(theirs, "rb") as f:
        assert (gzip.decompress(written) if compression else written) == f.read()
