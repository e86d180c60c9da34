"""Built-in example generators: layouts the converter's docs promise, seeded, with learnable structure."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import tables

from shardkit.convert import examples


def test_knots_layout_class_sorted_and_seeded(tmp_path) -> None:
    a = examples.write_knots(str(tmp_path / "a.h5"), 4, size=32, seed=3)
    b = examples.write_knots(str(tmp_path / "b.h5"), 4, size=32, seed=3)
    with tables.open_file(a) as fa, tables.open_file(b) as fb:
        x, y = fa.root.train_data, fa.root.train_label
        assert isinstance(x, tables.EArray) and x.shape == (12, 32 * 32 * 3) and x.dtype == np.uint8
        assert y[:].tolist() == [0] * 4 + [1] * 4 + [2] * 4
        assert (x[:] == fb.root.train_data[:]).all()
        img = x[5].reshape(32, 32, 3)
        assert img.min() < 100 < img.max()  # dark strands on a light background


def test_plus_and_minus_trefoils_are_mirror_images() -> None:
    rng = np.random.default_rng(0)
    x1, y1, z1 = examples._knot_curve(1, np.random.default_rng(1), 100)
    x2, y2, z2 = examples._knot_curve(2, np.random.default_rng(1), 100)
    assert np.allclose(np.hypot(x1, y1), np.hypot(x2, y2)) and np.allclose(z1, z2)
    assert examples.knot_image(0, 64, rng).shape == (64, 64, 3)


def test_proteins_columns_motifs_and_formats(tmp_path) -> None:
    for suffix in ("parquet", "csv", "feather"):
        path = examples.write_proteins(str(tmp_path / f"p.{suffix}"), 120, seed=1, min_length=50, max_length=300)
        df = {"parquet": pd.read_parquet, "csv": pd.read_csv, "feather": pd.read_feather}[suffix](path)
        assert list(df.columns) == ["id", "Sequence", "ec_lvl_1", "cluster_id"] and len(df) == 120
        assert df["ec_lvl_1"].between(1, 7).all() and df["Sequence"].str.len().between(50, 300).all()
    rare = df["Sequence"].str.contains("[XBUOZ]").mean()
    assert 0 < rare < 0.6
    hits = [df[df.ec_lvl_1 == c]["Sequence"].str.contains(examples.EC_MOTIFS[c - 1].replace("X", "A")).mean()
            for c in sorted(df.ec_lvl_1.unique())]
    assert min(hits) > 0.7  # each class carries its motif


def test_feature_sequences_layout(tmp_path) -> None:
    path = examples.write_feature_sequences(str(tmp_path / "f.h5"), 40, seed=0, timesteps=6, dim=32)
    with h5py.File(path) as f:
        x, y = f["features"][:], f["labels"][:]
    assert x.shape == (40, 6, 32) and x.dtype == np.float32 and set(y.tolist()) == {0, 1}
    score = x.mean(axis=1) @ (x[y == 1].mean(axis=(0, 1)) - x[y == 0].mean(axis=(0, 1)))
    assert ((score > np.median(score)) == (y == 1)).mean() > 0.8


def test_examples_cli(tmp_path) -> None:
    assert examples.main(["proteins", str(tmp_path / "p.csv"), "--n", "20"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 20
