"""Real rows: several features and targets per example, file-path columns, HDF5 nodes as features.

Every kind is read back with TensorFlow and with the independent ``tfrecord`` reader and compared, byte for
byte, with its source; mistakes are one line and an exit code through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import IMAGE_ARGS, no_leftovers, run_convert, shard_bytes
from shardkit.spec import AMINO_ACIDS, read_metadata

N = 30


def _codes(seq: str, length: int) -> bytes:
    lut = {c: i + 1 for i, c in enumerate(AMINO_ACIDS[20])}
    codes = [lut.get(c.upper(), 0) for c in seq][:length]
    return bytes(codes + [0] * (length - len(codes)))


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    """A Parquet table with a column for every feature and target kind."""
    rng = np.random.default_rng(11)
    ec1 = np.tile([1, 2, 3], N // 3)
    df = pd.DataFrame({
        "id": np.arange(1000, 1000 + N),
        "Sequence": ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWYX"), int(rng.integers(3, 12)))) for _ in range(N)],
        "props": [rng.normal(0, 1, 3).astype(np.float32).tolist() for _ in range(N)],
        "family": rng.choice(["beta", "alpha", "gamma"], N),
        "count": rng.integers(-5, 50, N),
        "weight": rng.normal(0, 10, N),
        "ec_lvl_1": ec1,
        "ec_lvl_2": [f"{e}.{int(rng.integers(1, 3))}" for e in ec1],
        "tags": [sorted(set(rng.choice(["kinase", "membrane", "signal"], int(rng.integers(0, 3))).tolist()))
                 for _ in range(N)],
        "stability": rng.normal(0, 1, N),
        "shift": [rng.normal(0, 1, 2).tolist() for _ in range(N)],
        "cluster": np.arange(N) // 2,
    })
    path = str(tmp_path_factory.mktemp("rows") / "table.parquet")
    df.to_parquet(path, index=False, row_group_size=8)
    return path, df


TABLE_ARGS = ["--feature", "sequence=sequence:Sequence:max_length=8", "--feature", "props=array:props",
              "--feature", "family=category", "--feature", "count=scalar", "--feature", "weight=scalar",
              "--feature", "level=category:ec_lvl_1", "--target", "ec_lvl_1=class", "--target", "ec_lvl_2=class", "--target", "tags=multilabel",
              "--target", "stability=regression", "--target", "shift=regression", "--id", "id", "--num-shards", "2"]


@pytest.fixture(scope="module")
def table_out(table: tuple[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("rows-out") / "ds")
    rc, err = run_convert([table[0], "--out", out, *TABLE_ARGS])
    assert rc == 0, err
    return out


def _read_tf(out: str) -> dict[int, dict]:
    """Every record of every split, parsed by TensorFlow with the dataset's parse spec, by row_id."""
    import tensorflow as tf

    from shardkit.spec import parse_spec

    meta = read_metadata(out)
    spec = parse_spec(meta.features, meta.targets)
    recs = {}
    for split in meta.splits:
        for r in tf.data.TFRecordDataset(meta.shard_paths(out, split), compression_type=meta.compression or ""):
            ex = {k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()}
            recs[int(ex["row_id"])] = ex
    return recs


READER = """
import json, sys
from tfrecord.reader import tfrecord_loader
description = json.loads(sys.argv[1])
out = []
for path in sys.argv[2:]:
    for rec in tfrecord_loader(path, None, description):
        out.append({k: bytes(v).hex() if description[k] == "byte" else v.tolist() for k, v in rec.items()})
print(json.dumps(out))
"""


def _read_tfrecord_package(out: str) -> dict[int, dict]:
    """Every record read by the PyPI ``tfrecord`` package (in a process without TensorFlow), by row_id."""
    meta = read_metadata(out)
    desc = {"row_id": "int"}  # the tfrecord package's names for bytes, float and int64 lists
    for f in meta.features:
        desc[f.name] = "byte" if f.stored_as_bytes else "float" if f.dtype == "float32" else "int"
        if f.kind == "sequence":
            desc[f.name + "_length"] = "int"
    for t in meta.targets:
        desc[t.name] = "float" if t.kind == "regression" else "int"
    paths = [p for split in meta.splits for p in meta.shard_paths(out, split)]
    res = subprocess.run([sys.executable, "-c", READER, json.dumps(desc), *paths], capture_output=True, text=True,
                         check=True)
    recs = {}
    for r in json.loads(res.stdout):
        ex = {k: bytes.fromhex(v) if desc[k] == "byte" else np.array(v) for k, v in r.items()}
        recs[int(ex["row_id"][0])] = {k: v if desc[k] == "byte" or v.size > 1 or k in ("tags", "shift") else v.reshape(())
                                      for k, v in ex.items()}
    return recs


def _check_table(meta, recs: dict[int, dict], df: pd.DataFrame) -> None:
    """Each record against its source row, exactly: codes, float32 bytes, indices into the stored names."""
    assert sorted(recs) == df["id"].tolist()
    family = meta.feature("family").categories
    assert family == ("alpha", "beta", "gamma")
    names = {t.name: t.names for t in meta.targets}
    assert names["tags"] == ("kinase", "membrane", "signal")
    for _, row in df.iterrows():
        r = recs[int(row["id"])]
        assert bytes(r["sequence"]) == _codes(row["Sequence"], 8)
        assert int(r["sequence_length"]) == len(row["Sequence"])
        assert bytes(r["props"]) == np.asarray(row["props"], np.float32).tobytes()
        assert family[int(r["family"])] == row["family"]
        assert meta.feature("level").categories[int(r["level"])] == str(row["ec_lvl_1"])
        assert int(r["count"]) == row["count"] and meta.feature("count").dtype == "int64"
        assert np.float32(r["weight"]) == np.float32(row["weight"])
        assert names["ec_lvl_1"][int(r["ec_lvl_1"])] == str(row["ec_lvl_1"])
        assert names["ec_lvl_2"][int(r["ec_lvl_2"])] == row["ec_lvl_2"]
        assert [n for n, hot in zip(names["tags"], np.asarray(r["tags"]).tolist()) if hot] == list(row["tags"])
        assert np.float32(r["stability"]) == np.float32(row["stability"])
        assert np.asarray(r["shift"], np.float32).tobytes() == np.asarray(row["shift"], np.float32).tobytes()


def test_table_every_kind_round_trips_exactly(table: tuple[str, pd.DataFrame], table_out: str) -> None:
    meta = read_metadata(table_out)
    assert meta.format_version == 2 and meta.stratify == "ec_lvl_1"  # the first class target
    assert [(f.name, f.kind) for f in meta.features] == [
        ("sequence", "sequence"), ("props", "array"), ("family", "category"), ("count", "scalar"), ("weight", "scalar"),
        ("level", "category")]
    assert meta.feature("level").categories == ("1", "2", "3") and meta.feature("weight").dtype == "float32"
    assert [(t.name, t.kind, t.value_shape) for t in meta.targets] == [
        ("ec_lvl_1", "class", ()), ("ec_lvl_2", "class", ()), ("tags", "multilabel", (3,)),
        ("stability", "regression", ()), ("shift", "regression", (2,))]
    assert meta.source["columns"]["sequence"] == {"kind": "sequence", "column": "Sequence"}
    assert meta.source["columns"]["family"] == {"kind": "category", "column": "family"}
    assert sum(meta.splits[s].class_counts[0] for s in meta.splits) == N // 3
    _check_table(meta, _read_tf(table_out), table[1])


def test_table_read_by_independent_tfrecord_package(table: tuple[str, pd.DataFrame], table_out: str) -> None:
    _check_table(read_metadata(table_out), _read_tfrecord_package(table_out), table[1])


def test_same_seed_same_bytes_and_stratify_by_another_target(table: tuple[str, pd.DataFrame], table_out: str,
                                                             tmp_path) -> None:
    again = str(tmp_path / "again")
    assert run_convert([table[0], "--out", again, *TABLE_ARGS])[0] == 0
    assert shard_bytes(again) == shard_bytes(table_out)
    other = str(tmp_path / "other")
    assert run_convert([table[0], "--out", other, *TABLE_ARGS, "--stratify", "ec_lvl_2"])[0] == 0
    meta = read_metadata(other)
    assert meta.stratify == "ec_lvl_2" and meta.label.name == "ec_lvl_2"
    assert len(meta.splits["train"].class_counts) == meta.target("ec_lvl_2").num_classes


def test_no_class_target_is_a_seeded_random_split_that_keeps_groups(table: tuple[str, pd.DataFrame], tmp_path) -> None:
    args = ["--feature", "props=array:props", "--target", "stability=regression", "--seed", "5"]
    a, b, c = (str(tmp_path / x) for x in "abc")
    assert run_convert([table[0], "--out", a, *args, "--split", "0.6,0.2,0.2"])[0] == 0
    meta = read_metadata(a)
    assert meta.stratify is None and [meta.splits[s].count for s in ("train", "validation", "test")] == [18, 6, 6]
    assert all(meta.splits[s].class_counts == () for s in meta.splits)
    assert run_convert([table[0], "--out", b, *args, "--split", "0.6,0.2,0.2"])[0] == 0
    assert shard_bytes(a) == shard_bytes(b)
    assert run_convert([table[0], "--out", c, *args, "--group-column", "cluster"])[0] == 0
    recs = _read_tf(c)
    clusters = {}
    meta = read_metadata(c)
    import tensorflow as tf

    from shardkit.spec import parse_spec

    for split in meta.splits:
        for r in tf.data.TFRecordDataset(meta.shard_paths(c, split)):
            rid = int(tf.io.parse_single_example(r, parse_spec(meta.features, meta.targets))["row_id"])
            clusters.setdefault(rid // 2, set()).add(split)
    assert len(recs) == N and all(len(s) == 1 for s in clusters.values())


def test_spec_file_yaml_and_json_equal_the_flags(table: tuple[str, pd.DataFrame], table_out: str, tmp_path) -> None:
    spec = {
        "features": [{"name": "sequence", "kind": "sequence", "column": "Sequence", "max_length": 8},
                     {"name": "props", "kind": "array", "column": "props"},
                     {"name": "family", "kind": "category"}, {"name": "count", "kind": "scalar"},
                     {"name": "weight", "kind": "scalar"}, {"name": "level", "kind": "category", "column": "ec_lvl_1"}],
        "targets": {"ec_lvl_1": {"kind": "class"}, "ec_lvl_2": {"kind": "class"}, "tags": {"kind": "multilabel"},
                    "stability": {"kind": "regression"}, "shift": {"kind": "regression"}},
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    rest = ["--id", "id", "--num-shards", "2"]
    for name in ("s.json", "s.yaml"):
        out = str(tmp_path / (name + ".ds"))
        rc, err = run_convert([table[0], "--out", out, "--spec", str(tmp_path / name), *rest])
        assert rc == 0, err
        assert shard_bytes(out) == shard_bytes(table_out)


def test_hdf5_nodes_as_features(tmp_path) -> None:
    """/images plus /meta as two features; multi-hot, one-hot class and vector regression nodes as targets."""
    import h5py

    rng = np.random.default_rng(3)
    n = 24
    images = rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    meta_rows = rng.normal(0, 1, (n, 4)).astype(np.float32)
    hot = rng.integers(0, 2, (n, 3))
    onehot = np.eye(3, dtype=np.int64)[np.arange(n) % 3]
    reg = rng.normal(0, 1, (n, 2))
    path = str(tmp_path / "nodes.h5")
    with h5py.File(path, "w") as f:
        f["images"], f["meta"], f["hot"], f["onehot"], f["reg"] = images, meta_rows, hot, onehot, reg
    out = str(tmp_path / "ds")
    rc, err = run_convert([path, "--out", out, "--feature", "images=image:/images", "--feature", "meta=array:/meta",
                           "--target", "kind=class:/onehot", "--target", "flags=multilabel:/hot",
                           "--target", "xy=regression:/reg"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert meta.source["columns"]["images"]["column"] == "/images" and meta.target("kind").source_kind == "onehot"
    assert meta.target("flags").names == ("0", "1", "2") and meta.target("xy").shape == (2,)
    recs = _read_tf(out)
    assert sorted(recs) == list(range(n))
    for i, r in recs.items():
        assert r["images"] == images[i].tobytes() and r["meta"] == meta_rows[i].tobytes()
        assert int(r["kind"]) == i % 3 and r["flags"].tolist() == hot[i].tolist()
        assert r["xy"].tobytes() == reg[i].astype(np.float32).tobytes()


def _png_table(tmp_path, n: int = 4, size: int = 8) -> str:
    from shardkit.convert.examples import write_png_table

    return write_png_table(str(tmp_path / "pngs" / "images.csv"), n, size=size, seed=2)


def test_png_paths_load_in_workers_and_round_trip(tmp_path) -> None:
    from PIL import Image

    csv = _png_table(tmp_path)
    out = str(tmp_path / "ds")
    rc, err = run_convert([csv, "--out", out, "--feature", "image=image:path:files", "--target", "label=class"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert meta.feature("image").shape == (8, 8, 3) and meta.label.names == ("minus_trefoil", "plus_trefoil", "unknot")
    assert meta.source["columns"]["image"] == {"kind": "image", "column": "path", "files": True}
    table = pd.read_csv(csv)
    for source in (_read_tf(out), _read_tfrecord_package(out)):
        assert sorted(source) == list(range(len(table)))
        for i, r in source.items():
            pixels = np.asarray(Image.open(os.path.join(os.path.dirname(csv), table["path"][i])))
            assert bytes(r["image"]) == pixels.tobytes()
            assert meta.label.names[int(r["label"])] == table["label"][i]


def test_npy_paths_seed_003_layout(tmp_path) -> None:
    from shardkit.convert.examples import write_npy_table

    csv = write_npy_table(str(tmp_path / "npys" / "labels.csv"), 12, seed=1, timesteps=3, dim=5)
    out = str(tmp_path / "ds")
    rc, err = run_convert([csv, "--out", out, "--feature", "features=array:path:files", "--target", "label=class",
                           "--dtype", "float16"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert meta.feature("features").shape == (3, 5) and meta.feature("features").dtype == "float16"
    table = pd.read_csv(csv)
    for i, r in _read_tf(out).items():
        x = np.load(os.path.join(os.path.dirname(csv), table["path"][i]))
        assert r["features"] == x.astype("<f2").tobytes() and int(r["label"]) == table["label"][i]


def test_shorthand_is_the_feature_target_form(knots_h5: str, tmp_path) -> None:
    """--kind/--data/--label is one feature named by the kind and the class target 'label': same shards."""
    short, long = str(tmp_path / "short"), str(tmp_path / "long")
    assert run_convert([knots_h5, "--out", short, *IMAGE_ARGS])[0] == 0
    rc, err = run_convert([knots_h5, "--out", long, "--feature", "image=image:/train_data:shape=24,24,3",
                           "--target", "label=class:/train_label"])
    assert rc == 0, err
    assert shard_bytes(short) == shard_bytes(long)
    assert read_metadata(short).dataset_id == read_metadata(long).dataset_id
    mixed = str(tmp_path / "mixed")  # --label with --feature: the class target 'label'
    assert run_convert([knots_h5, "--out", mixed, "--feature", "image=image:/train_data:shape=24,24,3",
                        "--label", "/train_label"])[0] == 0
    assert shard_bytes(mixed) == shard_bytes(short)


# sha256 (first 16 hex) over the shards the shorthand wrote before several features existed
BEFORE = {"knots": "42ea0c403a3c61fc", "proteins": "d06eca06b39aadf2"}


def test_shorthand_shards_unchanged_from_the_one_feature_converter(tmp_path) -> None:
    from shardkit.convert.examples import write_knots, write_proteins

    k = write_knots(str(tmp_path / "k.h5"), 10, size=8, seed=5)
    p = write_proteins(str(tmp_path / "p.parquet"), 60, seed=6, min_length=10, max_length=50)
    cases = {"knots": [k, "--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape",
                       "8,8,3", "--num-shards", "2"],
             "proteins": [p, "--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--id", "id",
                          "--group-column", "cluster_id", "--max-length", "30", "--num-shards", "2"]}
    for name, args in cases.items():
        out = str(tmp_path / name)
        assert run_convert([*args, "--out", out])[0] == 0
        h = hashlib.sha256()
        for rel, data in sorted(shard_bytes(out).items()):
            h.update(rel.encode())
            h.update(data)
        assert h.hexdigest()[:16] == BEFORE[name], name


def _cli(*argv: str) -> tuple[int, str]:
    """The real command in a subprocess: (exit status, stderr)."""
    res = subprocess.run([sys.executable, "-m", "shardkit.convert", *argv, "--workers", "1", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    return res.returncode, res.stderr


def test_missing_image_file_names_row_and_path_and_publishes_nothing(tmp_path) -> None:
    csv = _png_table(tmp_path)
    gone = os.path.join(os.path.dirname(csv), pd.read_csv(csv)["path"][5])
    os.remove(gone)
    out = str(tmp_path / "ds")
    rc, err = _cli(csv, "--out", out, "--feature", "image=image:path:files", "--target", "label=class")
    assert rc == 1
    assert err.splitlines()[0] == f"shardkit-convert: error: {csv}: column 'path', row 5: {gone}: no such file"
    assert "Traceback" not in err and no_leftovers(out)


@pytest.mark.parametrize("case", ["not-an-image", "other-size"])
def test_bad_image_files_are_refused_naming_the_file(tmp_path, case: str) -> None:
    from PIL import Image

    csv = _png_table(tmp_path)
    bad = os.path.join(os.path.dirname(csv), pd.read_csv(csv)["path"][7])
    if case == "not-an-image":
        with open(bad, "w") as f:
            f.write("this is text")
        needle = f"row 7: {bad}: not a readable image"
    else:
        Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(bad)
        needle = f"row 7: {bad} is 8x9 pixels, but the feature's images are 8x8; resize the files to one size"
    out = str(tmp_path / "ds")
    rc, err = run_convert([csv, "--out", out, "--feature", "image=image:path:files", "--target", "label=class"])
    assert rc == 1 and needle in err, err
    assert no_leftovers(out)


def test_nan_scalar_is_refused_naming_the_row(table: tuple[str, pd.DataFrame], tmp_path) -> None:
    df = table[1].copy()
    df.loc[13, "weight"] = np.nan
    path = str(tmp_path / "nan.parquet")
    df.to_parquet(path, index=False)
    out = str(tmp_path / "ds")
    rc, err = _cli(path, "--out", out, "--feature", "weight=scalar", "--target", "ec_lvl_1=class")
    assert rc == 1
    assert err.splitlines()[0] == f"shardkit-convert: error: {path}: column 'weight', row 13: value is missing (NaN)"
    assert no_leftovers(out)


@pytest.mark.parametrize("args,message", [
    (["--feature", "x=picture:props", "--target", "y=class:ec_lvl_1"],
     "--feature 'x=picture:props': unknown feature kind 'picture'; feature kinds are image, sequence, array, "
     "scalar, category"),
    (["--feature", "props=array", "--target", "props=regression:stability"],
     "target name 'props' is used twice (also a feature); every feature and target needs its own name: rename one"),
    (["--feature", "props=array", "--target", "s=regression:stability", "--stratify", "s"],
     "--stratify s: is a regression target; stratify by a class target, or leave --stratify out for a seeded "
     "random split"),
    (["--feature", "props", "--target", "y=class:ec_lvl_1"],
     "--feature 'props': expected NAME=KIND:COLUMN[:OPTION=VALUE...], e.g. --feature image=image:path:files"),
    (["--feature", "s=sequence:Sequence:maxlen=4", "--target", "y=class:ec_lvl_1"],
     "--feature 's=sequence:Sequence:maxlen=4': 'maxlen' is not an option of sequence features; their options are "
     "max_length, vocabulary, unknown"),
    (["--feature", "props=array"], "no target: give --target NAME=KIND:COLUMN (or --label COLUMN, or targets in --spec)"),
])
def test_bad_specs_are_one_line_and_exit_2(table: tuple[str, pd.DataFrame], tmp_path, args: list[str],
                                           message: str) -> None:
    out = str(tmp_path / "ds")
    rc, err = run_convert([table[0], "--out", out, *args])
    assert rc == 2
    assert err == f"shardkit-convert: error: {message}\n"
    assert not os.path.exists(out)


def test_bad_spec_file_is_one_line_and_exit_2(table: tuple[str, pd.DataFrame], tmp_path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("features:\n  - {name: x, kind: scalar}\nlabels: []\n")
    rc, err = _cli(table[0], "--out", str(tmp_path / "ds"), "--spec", str(bad))
    assert rc == 2
    assert err == f"shardkit-convert: error: --spec {bad}: unknown key 'labels'; the keys are features, targets, stratify\n"


def test_multi_column_example_is_learnable(tmp_path) -> None:
    """Example (a): stability is a linear function of props (R^2 > 0.95), ec_lvl_2 refines ec_lvl_1, and the
    family follows the sub-class for most rows; every column converts."""
    from shardkit.convert.examples import write_protein_table

    path = write_protein_table(str(tmp_path / "t.parquet"), 200, seed=4, min_length=20, max_length=60)
    df = pd.read_parquet(path)
    x = np.c_[np.stack(df["props"].to_numpy()), np.ones(len(df))]
    y = df["stability"].to_numpy()
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    assert 1 - resid.var() / y.var() > 0.95
    assert (df["ec_lvl_2"].str.split(".").str[0].astype(int) == df["ec_lvl_1"]).all()
    sub = df["ec_lvl_2"].str.split(".").str[1].astype(int) - 1
    assert (df["family"].map({"alpha": 0, "beta": 1, "gamma": 2, "delta": 3}) == sub).mean() > 0.6
    out = str(tmp_path / "ds")
    rc, err = run_convert([path, "--out", out, "--feature", "sequence=sequence:Sequence", "--feature", "props=array",
                           "--feature", "family=category", "--target", "ec_lvl_1=class", "--target", "ec_lvl_2=class",
                           "--target", "stability=regression", "--group-column", "cluster_id"])
    assert rc == 0, err
    meta = read_metadata(out)
    assert sum(s.count for s in meta.splits.values()) == 200 and meta.target("ec_lvl_2").source_kind == "string"


def test_image_paths_in_object_storage(tmp_path) -> None:
    """A CSV in S3 (moto's server on loopback) whose paths are relative to its prefix or full s3:// URLs:
    the workers read them through Beam's filesystems; the shards equal a local conversion's."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    import boto3

    from bench.object_store import CREDS, loopback_s3, s3_args

    csv = _png_table(tmp_path, n=2)
    local = str(tmp_path / "local")
    args = ["--feature", "image=image:path:files", "--target", "label=class"]
    assert run_convert([csv, "--out", local, *args])[0] == 0
    with loopback_s3(str(tmp_path / "moto.log")) as (url, _):
        client = boto3.client("s3", endpoint_url=url, **CREDS)
        client.create_bucket(Bucket="rows")
        table = pd.read_csv(csv)
        for rel in table["path"]:
            client.upload_file(os.path.join(os.path.dirname(csv), rel), "rows", f"t/{rel}")
        table.loc[1, "path"] = f"s3://rows/t/{table['path'][1]}"
        client.put_object(Bucket="rows", Key="t/images.csv", Body=table.to_csv(index=False).encode())
        out = str(tmp_path / "remote")
        rc, err = run_convert(["s3://rows/t/images.csv", "--out", out, *args, "--", *s3_args(url)])
        assert rc == 0, err
        assert shard_bytes(out) == shard_bytes(local)
        client.delete_object(Bucket="rows", Key=f"t/{pd.read_csv(csv)['path'][4]}")
        rc, err = run_convert(["s3://rows/t/images.csv", "--out", str(tmp_path / "gone"), *args, "--", *s3_args(url)])
        assert rc == 1 and f"row 4: s3://rows/t/{pd.read_csv(csv)['path'][4]}: " in err, err
