"""End-to-end conversions with the real Beam pipeline: round trip, shuffle, stratification, encodings, labels."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import tables

from conftest import IMAGE_ARGS, read_split, run_convert, shard_bytes
from shardkit.spec import AMINO_ACIDS, Metadata, read_metadata


@pytest.fixture(scope="module")
def knots_out(knots_h5: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("knots") / "ds")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS, "--num-shards", "3", "--workers", "1"])
    assert rc == 0, err
    return out


def _source(path: str) -> tuple[np.ndarray, np.ndarray]:
    with tables.open_file(path) as f:
        return f.root.train_data[:], f.root.train_label[:]


def test_round_trip_every_row_once_bytes_equal(knots_out: str, knots_h5: str) -> None:
    data, labels = _source(knots_h5)
    meta = read_metadata(knots_out)
    seen = []
    for split in ("train", "validation", "test"):
        recs = read_split(knots_out, split)
        assert len(recs["row_id"]) == meta.splits[split].count
        for rid, img, lab in zip(recs["row_id"], recs["image"], recs["label"]):
            assert img == data[rid].tobytes()
            assert lab == labels[rid]
        seen.extend(recs["row_id"].tolist())
    assert sorted(seen) == list(range(len(labels)))
    f = meta.feature("image")
    assert (f.shape, f.dtype, f.encoding) == ((24, 24, 3), "uint8", "raw")
    assert meta.label.names == ("0", "1", "2")
    assert meta.source["rows"] == len(labels) and meta.source["inputs"][0]["size"] == os.path.getsize(knots_h5)
    assert meta.seed == 0 and meta.tool_version.startswith("shardkit")
    assert len(meta.splits["train"].shards) == 3
    assert sum(s.count for s in meta.splits["train"].shards) == meta.splits["train"].count
    for sh in meta.splits["train"].shards:
        assert sh.bytes == os.path.getsize(os.path.join(knots_out, sh.path))
    assert not os.path.exists(os.path.join(knots_out, "_stats"))


def test_stratified_counts(knots_out: str) -> None:
    meta = read_metadata(knots_out)
    for split, frac in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        for c in meta.splits[split].class_counts:
            assert abs(c - frac * 40) <= 1


def test_shuffle_breaks_class_sorted_order(knots_out: str) -> None:
    """Source is class-sorted; every shard's label sequence must look random (short runs, all classes)."""
    import tensorflow as tf

    from shardkit.spec import parse_spec

    meta = read_metadata(knots_out)
    rng = np.random.default_rng(0)
    for path in meta.shard_paths(knots_out, "train"):
        labels = np.array([tf.io.parse_single_example(r, parse_spec(meta.features))["label"].numpy()
                           for r in tf.data.TFRecordDataset(path)])
        assert set(labels.tolist()) == {0, 1, 2}
        longest = max(len(run) for run in np.split(labels, np.flatnonzero(np.diff(labels)) + 1))
        chance = max(max(len(r) for r in np.split(p, np.flatnonzero(np.diff(p)) + 1))
                     for p in (rng.permutation(labels) for _ in range(200)))
        assert longest <= chance


READER = """
import json, sys
from tfrecord.reader import tfrecord_loader
out = []
for path in sys.argv[1:]:
    for rec in tfrecord_loader(path, None, {"image": "byte", "label": "int", "row_id": "int"}):
        out.append([int(rec["row_id"][0]), int(rec["label"][0]), bytes(rec["image"]).hex()])
print(json.dumps(out))
"""


def test_independent_reader_tfrecord_package(knots_out: str, knots_h5: str) -> None:
    """The PyPI ``tfrecord`` reader (run without TensorFlow: its protos clash with TF's) reads our shards."""
    import subprocess
    import sys

    data, labels = _source(knots_h5)
    meta = read_metadata(knots_out)
    paths = meta.shard_paths(knots_out, "validation") + meta.shard_paths(knots_out, "train")
    res = subprocess.run([sys.executable, "-c", READER, *paths], capture_output=True, text=True, check=True)
    recs = json.loads(res.stdout)
    assert len(recs) == meta.splits["validation"].count + meta.splits["train"].count
    for rid, lab, hexed in recs:
        assert bytes.fromhex(hexed) == data[rid].tobytes() and lab == labels[rid]


def test_deterministic_across_worker_counts_and_reruns(knots_h5: str, knots_out: str, tmp_path) -> None:
    out2 = str(tmp_path / "w2")
    rc, err = run_convert([knots_h5, "--out", out2, *IMAGE_ARGS, "--num-shards", "3", "--workers", "2"])
    assert rc == 0, err
    assert shard_bytes(out2) == shard_bytes(knots_out)
    assert read_metadata(out2).dataset_id == read_metadata(knots_out).dataset_id  # same records, same id
    threads = str(tmp_path / "threads")
    rc, err = run_convert([knots_h5, "--out", threads, *IMAGE_ARGS, "--num-shards", "3", "--workers", "2",
                           "--worker-mode", "thread"])
    assert rc == 0, err
    assert shard_bytes(threads) == shard_bytes(knots_out)
    assert "multi_threading" in read_metadata(threads).stats["runner"]
    rc, _ = run_convert([knots_h5, "--out", out2, *IMAGE_ARGS, "--num-shards", "3", "--workers", "2"])
    assert rc == 1  # existing dataset is refused without --overwrite
    rc, err = run_convert([knots_h5, "--out", out2, *IMAGE_ARGS, "--num-shards", "3", "--seed", "7", "--overwrite"])
    assert rc == 0, err
    assert shard_bytes(out2) != shard_bytes(knots_out)
    assert read_metadata(out2).seed == 7
    assert read_metadata(out2).dataset_id != read_metadata(knots_out).dataset_id


def test_dataset_id_follows_content(knots_out: str) -> None:
    """The id hashes the shard checksums, which are the CRC32C of the records' bytes; an old-style dataset
    without checksums still gets an id."""
    import crc32c

    meta = read_metadata(knots_out)
    assert len(meta.dataset_id) == 16 and json.load(open(f"{knots_out}/metadata.json"))["dataset_id"] == meta.dataset_id
    for shard in meta.splits["train"].shards:
        assert shard.crc32c == crc32c.crc32c(open(f"{knots_out}/{shard.path}", "rb").read())
    d = json.load(open(f"{knots_out}/metadata.json"))
    del d["dataset_id"]
    for split in d["splits"].values():
        for shard in split["shards"]:
            del shard["crc32c"]
    old = Metadata.from_dict(d)
    assert len(old.dataset_id) == 16 and old.dataset_id != meta.dataset_id
    assert Metadata.from_dict({**d, "created": "2020-01-01T00:00:00+00:00"}).dataset_id != old.dataset_id


def test_png_gzip_round_trip(knots_h5: str, tmp_path) -> None:
    import tensorflow as tf

    out = str(tmp_path / "png")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS, "--image-encoding", "png", "--compression", "gzip",
                           "--split", "0.5,0.5", "--workers", "1"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert meta.compression == "GZIP" and set(meta.splits) == {"train", "validation"}
    assert meta.shard_paths(out, "train")[0].endswith(".tfrecord.gz")
    data, _ = _source(knots_h5)
    recs = read_split(out, "train")
    for rid, png in zip(recs["row_id"], recs["image"]):
        assert (tf.io.decode_png(png).numpy() == data[rid].reshape(24, 24, 3)).all()


def test_float16_arrays_h5py(features_h5: str, tmp_path) -> None:
    import h5py

    out = str(tmp_path / "f16")
    rc, err = run_convert([features_h5, "--out", out, "--kind", "array", "--data", "/features", "--label", "/labels",
                           "--dtype", "float16", "--workers", "1"])
    assert rc == 0, err
    with h5py.File(features_h5) as f:
        x, y = f["features"][:], f["labels"][:]
    meta = read_metadata(out)
    assert meta.feature("array").shape == (5, 8) and meta.feature("array").dtype == "float16"
    recs = read_split(out, "train")
    for rid, raw, lab in zip(recs["row_id"], recs["array"], recs["label"]):
        assert (np.frombuffer(raw, "<f2").reshape(5, 8) == x[rid].astype(np.float16)).all() and lab == y[rid]


def _labels_h5(path: str, labels: np.ndarray, n: int = 30) -> str:
    with tables.open_file(path, "w") as f:
        f.create_array("/", "x", np.arange(n * 4, dtype=np.float32).reshape(n, 4))
        f.create_array("/", "y", labels)
    return path


@pytest.mark.parametrize("kind", ["one_to_seven", "strings", "onehot"])
def test_label_mappings(kind: str, tmp_path) -> None:
    raw = np.arange(28) % 7
    if kind == "one_to_seven":
        labels, names, source_kind = raw + 1, tuple(str(i) for i in range(1, 8)), "int"
    elif kind == "strings":
        labels = np.array([f"class{c}" for c in raw])
        names, source_kind = tuple(f"class{i}" for i in range(7)), "string"
    else:
        labels, names, source_kind = np.eye(7, dtype=np.int8)[raw], tuple(str(i) for i in range(7)), "onehot"
    src = _labels_h5(str(tmp_path / "l.h5"), labels, n=28)
    out = str(tmp_path / "out")
    rc, err = run_convert([src, "--out", out, "--kind", "array", "--data", "/x", "--label", "/y", "--split", "1",
                           "--workers", "1"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert meta.label.names == names and meta.label.num_classes == 7 and meta.label.source_kind == source_kind
    recs = read_split(out, "train")
    assert (recs["label"] == raw[recs["row_id"]]).all()


def test_sequences_parquet_group_split(proteins_parquet: str, tmp_path) -> None:
    df = pd.read_parquet(proteins_parquet)
    out = str(tmp_path / "seq")
    rc, err = run_convert([proteins_parquet, "--out", out, "--kind", "sequence", "--data", "Sequence",
                           "--label", "ec_lvl_1", "--id", "id", "--group-column", "cluster_id", "--max-length", "80"])
    assert rc == 0, err
    meta = read_metadata(out)
    f = meta.feature("sequence")
    assert f.shape == (80,) and f.vocabulary == AMINO_ACIDS[20]
    assert meta.label.names == tuple(str(i) for i in range(1, 8))
    lut = {ch: i + 1 for i, ch in enumerate(AMINO_ACIDS[20])}
    by_id = df.set_index("id")
    clusters, total, truncated, cut, unknown = [], 0, 0, 0, 0
    for split in meta.splits:
        recs = read_split(out, split)
        clusters.append(set(by_id.loc[recs["row_id"], "cluster_id"].tolist()))
        for rid, codes, length, lab in zip(recs["row_id"], recs["sequence"], recs["sequence_length"], recs["label"]):
            seq = by_id.loc[rid, "Sequence"]
            want = np.array([lut.get(ch.upper(), 0) for ch in seq[:80]] + [0] * max(0, 80 - len(seq)), np.uint8)
            assert (np.frombuffer(codes, np.uint8) == want).all()
            assert length == len(seq) and lab == by_id.loc[rid, "ec_lvl_1"] - 1
            truncated += len(seq) > 80
            cut += max(0, len(seq) - 80)
            unknown += sum(ch.upper() not in lut for ch in seq[:80])  # stored as 0; letters cut off are not
            total += 1
    assert total == len(df)
    assert not (clusters[0] & clusters[1]) and not (clusters[0] & clusters[2]) and not (clusters[1] & clusters[2])
    assert meta.stats["truncated_sequences"] == truncated > 0
    assert meta.stats["unknown_letters"] == unknown > 0
    assert meta.stats["truncated_letters"] == cut > 0


def test_sequences_csv_feather_vocab25_split_inputs(tmp_path) -> None:
    from shardkit.convert.examples import write_proteins

    train = write_proteins(str(tmp_path / "train.csv"), 60, seed=4, max_length=70)
    val = write_proteins(str(tmp_path / "val.feather"), 20, seed=5, max_length=70)
    out = str(tmp_path / "out")
    rc, err = run_convert(["--split-inputs", f"train={train}", f"validation={val}", "--out", out, "--kind",
                           "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--vocabulary", "25",
                           "--workers", "1"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert set(meta.splits) == {"train", "validation"}
    assert meta.splits["train"].count == 60 and meta.splits["validation"].count == 20
    longest = max(len(q) for q in [*pd.read_csv(train)["Sequence"], *pd.read_feather(val)["Sequence"]])
    assert meta.feature("sequence").shape == (longest,)  # default --max-length: the longest of both inputs
    assert [i["split"] for i in meta.source["inputs"]] == ["train", "validation"]
    recs = read_split(out, "validation")
    assert sorted(recs["row_id"].tolist()) == list(range(60, 80))  # row ids continue across inputs
    vdf = pd.read_feather(val)
    lut = {ch: i + 1 for i, ch in enumerate(AMINO_ACIDS[25])}
    for rid, codes in zip(recs["row_id"], recs["sequence"]):
        seq = vdf.loc[rid - 60, "Sequence"]
        assert np.frombuffer(codes, np.uint8)[: len(seq)].tolist() == [lut.get(c, 0) for c in seq]


def test_metadata_json_is_plain_json(knots_out: str) -> None:
    with open(os.path.join(knots_out, "metadata.json")) as f:
        d = json.load(f)
    assert d["splits"]["train"]["shards"][0]["path"] == "train/train-00000-of-00003.tfrecord"
    assert d["stats"]["rows_per_second"] > 0


def test_compressed_and_shaped_hdf5(tmp_path) -> None:
    """zlib-compressed PyTables EArray with rows already shaped (H, W, C): read through PyTables, bytes equal."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    src = str(tmp_path / "z.h5")
    with tables.open_file(src, "w") as f:
        arr = f.create_earray("/", "imgs", tables.UInt8Atom(), shape=(0, 8, 8, 3), filters=tables.Filters(complevel=1))
        arr.append(data)
        f.create_array("/", "lab", np.arange(50) % 2)
    out = str(tmp_path / "out")
    rc, err = run_convert([src, "--out", out, "--kind", "image", "--data", "imgs", "--label", "lab", "--split", "1",
                           "--num-shards", "4", "--workers", "2", "--worker-mode", "thread"])
    assert rc == 0, err
    assert read_metadata(out).feature("image").shape == (8, 8, 3)
    recs = read_split(out, "train")
    assert sorted(recs["row_id"].tolist()) == list(range(50))
    for rid, img in zip(recs["row_id"], recs["image"]):
        assert img == data[rid].tobytes()
