"""``decode_records`` (train/decode.py) against an independent decoding of the same records: every kind the
converter writes, GZIP shards, a record from another writer (other key order, an extra key), and a record
of the wrong size, which fails instead of decoding wrong. Plus the zero-copy numpy hand-over."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_ARGS, run_convert
from shardkit import spec
from shardkit.train.decode import as_numpy, decode_records


def _reference(record: bytes, meta: spec.Metadata) -> dict[str, np.ndarray]:
    """One record decoded by the protobuf library, numpy and PIL only: no TensorFlow parsing op."""
    from PIL import Image

    feats = tf.train.Example.FromString(record).features.feature

    def ints(key: str) -> np.ndarray:
        return np.asarray(feats[key].int64_list.value, np.int64)

    def floats(key: str) -> np.ndarray:
        return np.asarray(feats[key].float_list.value, np.float32)

    out: dict[str, np.ndarray] = {spec.ROW_ID_KEY: ints(spec.ROW_ID_KEY)[0]}
    for f in meta.features:
        if not f.stored_as_bytes:
            out[f.name] = (floats(f.name) if f.dtype == "float32" else ints(f.name))[0]
            continue
        payload = feats[f.name].bytes_list.value[0]
        if f.encoding == "png":
            out[f.name] = np.asarray(Image.open(io.BytesIO(payload))).reshape(f.shape)
        else:
            out[f.name] = np.frombuffer(payload, np.dtype(f.dtype).newbyteorder("<")).astype(f.dtype).reshape(f.shape)
        if f.kind == "sequence":
            out[f.name + spec.LENGTH_SUFFIX] = ints(f.name + spec.LENGTH_SUFFIX)[0]
    for t in meta.targets:
        value = floats(t.name) if t.kind == "regression" else ints(t.name)
        out[t.name] = value.reshape(t.value_shape)
    return out


def _records(out: str, meta: spec.Metadata) -> list[bytes]:
    paths = [p for split in meta.splits for p in meta.shard_paths(out, split)]
    return [r.numpy() for r in tf.data.TFRecordDataset(paths, meta.compression or "")]


def _check_equal(out: str) -> int:
    """Decode every record of ``out`` in batches of 7 and compare key by key with ``_reference``; the count."""
    meta = spec.read_metadata(out)
    records = _records(out, meta)
    decoded: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(records), 7):
        for key, value in decode_records(tf.constant(records[start : start + 7]), meta.features, meta.targets).items():
            decoded.setdefault(key, []).append(value.numpy())
    expected = [_reference(r, meta) for r in records]
    assert sorted(decoded) == sorted(expected[0])
    for key, parts in decoded.items():
        got, want = np.concatenate(parts), np.stack([e[key] for e in expected])
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    return len(records)


KINDS = {
    "image-raw": ("knots", [*IMAGE_ARGS]),
    "image-png": ("knots", [*IMAGE_ARGS, "--image-encoding", "png"]),
    "image-raw-gzip": ("knots", [*IMAGE_ARGS, "--compression", "gzip"]),
    "sequence-codes": ("proteins", ["--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--max-length", "90"]),
    "array-float32": ("features", ["--kind", "array", "--data", "/features", "--label", "/labels"]),
    "array-float16": ("features", ["--kind", "array", "--data", "/features", "--label", "/labels", "--dtype", "float16"]),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_decode_records_equals_an_independent_decoding(kind: str, request, tmp_path) -> None:
    source, args = KINDS[kind]
    src = request.getfixturevalue({"knots": "knots_h5", "proteins": "proteins_parquet", "features": "features_h5"}[source])
    out = str(tmp_path / kind)
    rc, err = run_convert([src, "--out", out, *args, "--num-shards", "2"])
    assert rc == 0, err
    assert _check_equal(out) == spec.read_metadata(out).splits["train"].count + sum(
        s.count for name, s in spec.read_metadata(out).splits.items() if name != "train")


def test_several_features_and_targets_decode_as_written(tmp_path) -> None:
    import pandas as pd

    rng = np.random.default_rng(5)
    n = 24
    table = pd.DataFrame({
        "Sequence": ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(3, 12)))) for _ in range(n)],
        "props": [rng.normal(0, 1, 3).astype(np.float32).tolist() for _ in range(n)],
        "family": rng.choice(["beta", "alpha", "gamma"], n),
        "count": rng.integers(-5, 50, n),
        "weight": rng.normal(0, 10, n),
        "ec": np.tile([1, 2, 3], n // 3),
        "tags": [sorted(set(rng.choice(["kinase", "membrane", "signal"], int(rng.integers(0, 3))).tolist())) for _ in range(n)],
        "shift": [rng.normal(0, 1, 2).tolist() for _ in range(n)],
    })
    src, out = str(tmp_path / "table.parquet"), str(tmp_path / "ds")
    table.to_parquet(src, index=False)
    rc, err = run_convert([src, "--out", out, "--feature", "sequence=sequence:Sequence:max_length=8",
                           "--feature", "props=array:props", "--feature", "family=category", "--feature", "count=scalar",
                           "--feature", "weight=scalar", "--target", "ec=class", "--target", "tags=multilabel",
                           "--target", "shift=regression", "--num-shards", "2"])
    assert rc == 0, err
    meta = spec.read_metadata(out)
    assert {f.kind for f in meta.features} == {"sequence", "array", "category", "scalar"}
    assert {t.kind for t in meta.targets} == {"class", "multilabel", "regression"}
    assert _check_equal(out) == n


IMAGE = spec.Feature("image", "image", (4, 4, 3), "uint8", "raw")


def _entries(**values: bytes | int) -> bytes:
    """An Example holding one key per call argument, serialised alone; concatenating several gives one Example
    whose keys appear in the concatenation's order (protobuf merges repeated messages)."""
    return b"".join(
        tf.train.Example(features=tf.train.Features(feature={k: (
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) if isinstance(v, bytes)
            else tf.train.Feature(int64_list=tf.train.Int64List(value=[v])))})).SerializeToString()
        for k, v in values.items()
    )


def test_another_writers_key_order_and_extra_keys_decode_the_same() -> None:
    pixels = [np.random.default_rng(i).integers(0, 256, (4, 4, 3), dtype=np.uint8) for i in range(3)]
    records = [
        _entries(row_id=2**40 + i, note=b"from another writer", label=i, image=p.tobytes()) if i % 2 else
        _entries(image=p.tobytes(), label=i, row_id=i)
        for i, p in enumerate(pixels)
    ]
    assert tf.train.Example.FromString(records[1]).features.feature["row_id"].int64_list.value[0] == 2**40 + 1
    got = decode_records(tf.constant(records), (IMAGE,))
    np.testing.assert_array_equal(got["image"].numpy(), np.stack(pixels))
    assert got["label"].numpy().tolist() == [0, 1, 2]
    assert got["row_id"].numpy().tolist() == [0, 2**40 + 1, 2]
    assert sorted(got) == ["image", "label", "row_id"]


@pytest.mark.parametrize("payload, missing", [(bytes(47), None), (bytes(48), "label")])
def test_a_record_that_does_not_fit_the_metadata_fails_the_batch(payload: bytes, missing: str | None) -> None:
    good = _entries(image=bytes(48), label=0, row_id=0)
    bad = _entries(image=payload, row_id=1, **({} if missing else {"label": 1}))
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_records(tf.constant([good, bad]), (IMAGE,))


def test_as_numpy_hands_over_without_a_copy(tmp_path_factory) -> None:
    from datasets import knots_dataset
    from shardkit.train.dataset import ReadOptions, eval_dataset

    path = knots_dataset(tmp_path_factory, n_per_class=20, size=16, num_shards=2)
    stream = eval_dataset(path, "validation", 5, ReadOptions(with_row_id=True))
    copies = [(x["image"].numpy(), x["row_id"].numpy(), y.numpy()) for x, y in stream]
    handed = list(as_numpy(stream))
    assert len(handed) == len(copies) > 1
    for (x, y), (image, row_id, label) in zip(handed, copies):
        assert isinstance(x, dict) and isinstance(y, np.ndarray)
        np.testing.assert_array_equal(x["image"], image)
        np.testing.assert_array_equal(x["row_id"], row_id)
        np.testing.assert_array_equal(y, label)
        assert x["image"].dtype == np.uint8 and not x["image"].flags.owndata and not x["image"].flags.writeable
