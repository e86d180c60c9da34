"""Every bad input gives one clear error naming file, node/column and row, and publishes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tables

from conftest import IMAGE_ARGS, no_leftovers, run_convert
from shardkit.convert.encoders import ArrayEncoder, SequenceEncoder


def _h5(path: str, **arrays: np.ndarray) -> str:
    with tables.open_file(path, "w") as f:
        for name, a in arrays.items():
            f.create_array("/", name, a)
    return path


def _fails(argv: list[str], out: str, *needles: str) -> str:
    rc, err = run_convert([*argv, "--out", out])
    assert rc == 1, err
    assert "nothing was published" in err
    for n in needles:
        assert n in err, (n, err)
    assert no_leftovers(out)
    return err


ARRAY = ["--kind", "array", "--data", "/x", "--label", "/y", "--workers", "1"]
SEQ = ["--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--workers", "1"]


def test_missing_file(tmp_path) -> None:
    _fails([str(tmp_path / "nope.h5"), *IMAGE_ARGS], str(tmp_path / "o"), "nope.h5: no such file")


def test_not_a_known_format(tmp_path) -> None:
    bad = tmp_path / "data.h5"
    bad.write_bytes(b"this is not hdf5 at all" * 10)
    _fails([str(bad), *IMAGE_ARGS], str(tmp_path / "o"), "data.h5", "not an HDF5, Parquet, Feather or CSV")


def test_missing_node_and_column(knots_h5: str, proteins_parquet: str, tmp_path) -> None:
    args = ["--kind", "image", "--data", "/images", "--label", "/train_label", "--image-shape", "24,24,3"]
    _fails([knots_h5, *args], str(tmp_path / "o"), "knots.h5", "no node /images", "/train_data")
    _fails([proteins_parquet, "--kind", "sequence", "--data", "Seq", "--label", "ec_lvl_1"], str(tmp_path / "o"),
           "proteins.parquet", "no column 'Seq'", "Sequence")


def test_row_counts_differ(tmp_path) -> None:
    src = _h5(str(tmp_path / "a.h5"), x=np.zeros((5, 3), np.float32), y=np.zeros(4, np.int64))
    _fails([src, *ARRAY], str(tmp_path / "o"), "a.h5", "/x has 5 rows", "/y has 4")


def test_zero_rows(tmp_path) -> None:
    src = _h5(str(tmp_path / "a.h5"), x=np.zeros((0, 3), np.float32), y=np.zeros(0, np.int64))
    _fails([src, *ARRAY], str(tmp_path / "o"), "a.h5", "/x", "zero rows")
    pd.DataFrame({"Sequence": pd.Series([], dtype=str), "ec_lvl_1": pd.Series([], dtype=int)}).to_csv(
        tmp_path / "e.csv", index=False)
    _fails([str(tmp_path / "e.csv"), *SEQ], str(tmp_path / "o"), "e.csv", "zero rows")


def test_wrong_shape_and_dtype(knots_h5: str, tmp_path) -> None:
    args = ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape", "32,32,3"]
    _fails([knots_h5, *args], str(tmp_path / "o"), "knots.h5", "/train_data", "1728", "32,32,3")
    src = _h5(str(tmp_path / "f.h5"), x=np.random.rand(6, 4, 4, 3), y=np.zeros(6, np.int64))
    _fails([src, "--kind", "image", "--data", "/x", "--label", "/y"], str(tmp_path / "o"), "f.h5", "--image-scale")
    _fails([src, "--kind", "image", "--data", "/x", "--label", "/y", "--image-shape", "4,4"], str(tmp_path / "o"),
           "f.h5", "does not fit")
    txt = _h5(str(tmp_path / "s.h5"), x=np.array([b"ab", b"cd"]), y=np.zeros(2, np.int64))
    _fails([txt, *ARRAY], str(tmp_path / "o"), "s.h5", "/x", "numeric")


def test_nan_in_float_array_names_row(tmp_path) -> None:
    """An encoder's error raised inside the Beam job reaches the user as the same one line, nothing published."""
    x = np.ones((20, 3), np.float32)
    x[13, 1] = np.nan
    src = _h5(str(tmp_path / "n.h5"), x=x, y=np.arange(20) % 2)
    _fails([src, *ARRAY], str(tmp_path / "o"), "n.h5: node /x, row 13: NaN or inf value")


# The encoders' own messages, checked where they are made (the case above carries one through a whole job).


def test_array_encoder_names_the_row_of_a_bad_value() -> None:
    x = np.ones((20, 3), np.float32)
    for bad, dtype, message in ((np.inf, "float32", "NaN or inf value"), (1e30, "float16", "value out of float16 range")):
        x[13, 1] = bad
        with pytest.raises(Exception) as e:
            ArrayEncoder((3,), dtype).encode(x, range(100, 120), "a.h5: node /x")
        assert type(e.value).__name__ == "InputError" and str(e.value) == f"a.h5: node /x, row 113: {message}"


@pytest.mark.parametrize("value,message", [
    ("", "row 2: empty sequence"),
    (None, "row 2: missing sequence"),
    (5, "row 2: expected a string, got int"),
    ("PQJRS", "row 2: letter 'J' at position 2 is not in the 20-letter vocabulary (--unknown reject)"),
])
def test_sequence_encoder_names_the_row_of_a_bad_value(value: object, message: str) -> None:
    enc = SequenceEncoder(80, unknown="reject")
    with pytest.raises(Exception) as e:
        enc.encode_one(value, enc.table(), 2, "p.parquet: column 'Sequence'")
    assert type(e.value).__name__ == "InputError" and str(e.value) == f"p.parquet: column 'Sequence', {message}"


@pytest.mark.parametrize(
    "labels,needle",
    [
        (np.array([0, 1, np.nan, 1, 0, 1]), "row 2: label missing"),
        (np.array([0, 1, 0.5, 1, 0, 1]), "row 2: label 0.5 is not an integer"),
        (np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 1], [1, 0]]), "row 2"),
    ],
)
def test_bad_labels(labels: np.ndarray, needle: str, tmp_path) -> None:
    src = _h5(str(tmp_path / "l.h5"), x=np.zeros((6, 2), np.float32), y=labels)
    _fails([src, *ARRAY], str(tmp_path / "o"), "l.h5", "/y", needle)


def test_label_out_of_range_in_split_inputs(tmp_path) -> None:
    tr = _h5(str(tmp_path / "tr.h5"), x=np.zeros((6, 2), np.float32), y=np.array([0, 1, 0, 1, 0, 1]))
    va = _h5(str(tmp_path / "va.h5"), x=np.zeros((3, 2), np.float32), y=np.array([0, 5, 1]))
    _fails(["--split-inputs", f"train={tr}", f"validation={va}", *ARRAY], str(tmp_path / "o"),
           "va.h5", "/y", "row 1", "out of range")


def test_missing_labels_in_csv(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("Sequence,ec_lvl_1\nACDE,1\nKLMN,\nPQRS,2\n")
    _fails([str(tmp_path / "p.csv"), *SEQ], str(tmp_path / "o"), "p.csv", "'ec_lvl_1'", "row 1", "missing")


def test_empty_sequence_and_reject_unknown(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("Sequence,ec_lvl_1\nACDE,1\nKLMN,2\n,1\nPQRS,2\n")
    _fails([str(tmp_path / "p.csv"), *SEQ], str(tmp_path / "o"), "p.csv", "'Sequence'", "row 2", "empty sequence")
    df = pd.DataFrame({"Sequence": ["ACDE", "KLMN", "PQJRS", "AAAA"], "ec_lvl_1": [1, 2, 1, 2]})
    df.to_parquet(tmp_path / "p.parquet")  # --unknown reject reaches the encoder in the job
    _fails([str(tmp_path / "p.parquet"), *SEQ, "--unknown", "reject"], str(tmp_path / "o"), "p.parquet", "row 2",
           "'J'", "reject")


def test_fractions_must_sum_to_one(knots_h5: str, tmp_path) -> None:
    _fails([knots_h5, *IMAGE_ARGS, "--split", "0.8,0.1,0.2"], str(tmp_path / "o"), "--split", "sum to 1.1")


def test_kind_does_not_match_source(knots_h5: str, proteins_parquet: str, tmp_path) -> None:
    _fails([knots_h5, "--kind", "sequence", "--data", "/train_data", "--label", "/train_label"],
           str(tmp_path / "o"), "knots.h5", "Parquet/Feather/CSV")
    _fails([proteins_parquet, "--kind", "image", "--data", "Sequence", "--label", "ec_lvl_1"],
           str(tmp_path / "o"), "proteins.parquet", "HDF5 array node")


def test_remote_runner_with_local_path_is_refused(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "o")
    rc, err = run_convert([knots_h5, "--out", out, *IMAGE_ARGS, "--", "--runner=DataflowRunner", "--project=p",
                           "--region=r", "--temp_location=gs://b/t"])
    assert rc == 1 and "local path" in err and "DataflowRunner" in err and knots_h5 in err
    assert no_leftovers(out)


def test_class_names_must_match_the_classes(knots_h5: str, tmp_path) -> None:
    out = str(tmp_path / "o")
    _fails([knots_h5, *IMAGE_ARGS, "--class-names", "unknot,trefoil"], out,
           "--class-names gives 2 names", "/train_label", "3 classes (0, 1, 2)")
