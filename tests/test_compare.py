"""fit --repeat's summary and ``shardkit-train compare``: the statistics (against hand-computed values, and
scipy.stats where it is installed) and the CLI on real repeated runs of a tiny feature-sequence dataset."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import _build
from shardkit.train import stats


# ---- statistics, hand-computed ----

def test_t_distribution_matches_closed_forms() -> None:
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi; df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert stats.t_cdf(0.0, 7) == pytest.approx(0.5, abs=1e-15)
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    assert stats.t_cdf(-3.0, 1) == pytest.approx(0.5 + math.atan(-3.0) / math.pi, abs=1e-12)
    assert stats.t_cdf(2.0, 2) == pytest.approx(0.5 + 2 / (2 * math.sqrt(6)), abs=1e-12)
    assert stats.t_ppf(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-9)
    # df = 2 inverts in closed form: t = (2p - 1) sqrt(2 / (4 p (1 - p)))
    assert stats.t_ppf(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (4 * 0.975 * 0.025)), rel=1e-9)
    assert stats.t_ppf(0.025, 2) == pytest.approx(-stats.t_ppf(0.975, 2), rel=1e-12)
    # large df approaches the normal quantile
    assert stats.t_ppf(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)


def test_binomial_and_mcnemar_by_hand() -> None:
    assert stats.binom_cdf(3, 10) == pytest.approx((1 + 10 + 45 + 120) / 1024, abs=1e-15)
    assert stats.binom_cdf(-1, 10) == 0.0 and stats.binom_cdf(10, 10) == 1.0
    assert stats.mcnemar_exact(5, 0) == pytest.approx(2 / 32, abs=1e-15)  # all 5 discordant pairs favour A
    assert stats.mcnemar_exact(1, 3) == pytest.approx(2 * 5 / 16, abs=1e-15)  # 2 P(X <= 1), X ~ Bin(4, 1/2)
    assert stats.mcnemar_exact(4, 4) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    assert stats.binomial_se(0.8, 100) == pytest.approx(0.04, abs=1e-15)


def test_paired_and_welch_t_by_hand() -> None:
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3), df 2; P(|T| > t) = 1 - t / sqrt(2 + t^2)
    r = stats.paired_t([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    t = 2 * math.sqrt(3)
    assert (r["test"], r["df"], r["diff"]) == ("paired", 2, 2.0)
    assert r["t"] == pytest.approx(t, rel=1e-12)
    assert r["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)
    assert r["ci95"] == pytest.approx(0.95 * math.sqrt(2 / 0.0975) / math.sqrt(3), rel=1e-9)
    # Welch: variances 1/3 and 4/3 per mean, df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    w = stats.welch_t([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert w["diff"] == -2.0 and w["df"] == pytest.approx(50 / 17, rel=1e-12)
    assert w["t"] == pytest.approx(-2 / math.sqrt(5 / 3), rel=1e-12)
    # identical values: no spread, p = 1 for no difference and 0 for any difference
    assert stats.paired_t([0.5, 0.5], [0.5, 0.5])["p"] == 1.0
    assert stats.paired_t([0.6, 0.6], [0.5, 0.5])["p"] == 0.0


def test_reference_values_from_scipy_stats() -> None:
    """Values scipy.stats gives for these inputs, so the numpy/math implementations stay checked without scipy."""
    assert stats.t_cdf(1.7, 7.3) == pytest.approx(0.9344173158, abs=1e-9)
    assert stats.t_ppf(0.975, 4) == pytest.approx(2.7764451052, abs=1e-9)
    assert stats.t_ppf(0.975, 29) == pytest.approx(2.0452296421, abs=1e-9)
    assert stats.mcnemar_exact(120, 93) == pytest.approx(0.0745846079180613, rel=1e-9)
    assert stats.mcnemar_exact(1000, 1100) == pytest.approx(0.03072070786424249, rel=1e-8)
    a, b = [0.83, 0.81, 0.85, 0.80, 0.84], [0.82, 0.82, 0.83, 0.79, 0.84]
    assert stats.paired_t(a, b)["p"] == pytest.approx(0.30455878468053194, rel=1e-9)
    assert stats.welch_t(a, [0.80, 0.79, 0.82, 0.78])["p"] == pytest.approx(0.05840212497188564, rel=1e-9)


def test_statistics_agree_with_scipy_when_installed() -> None:
    sp = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for df in (1, 2, 3.5, 4, 9, 30, 250):
        for t in (-4.0, -1.0, 0.3, 2.0, 12.0):
            assert stats.t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), abs=1e-12)
        for q in (0.6, 0.9, 0.975, 0.995):
            assert stats.t_ppf(q, df) == pytest.approx(sp.t.ppf(q, df), rel=1e-9)
    for b, c in ((0, 7), (3, 9), (40, 61), (500, 430), (2000, 2150)):
        assert stats.mcnemar_exact(b, c) == pytest.approx(sp.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    for _ in range(5):
        a, b = rng.normal(0.8, 0.02, 6), rng.normal(0.79, 0.03, 6)
        assert stats.paired_t(a, b)["p"] == pytest.approx(sp.ttest_rel(a, b).pvalue, rel=1e-9)
        assert stats.welch_t(a, b[:4])["p"] == pytest.approx(sp.ttest_ind(a, b[:4], equal_var=False).pvalue, rel=1e-9)


def test_resolving_sizes_by_hand() -> None:
    # two examples that swap between seeds: all of the spread is per example, none shared
    assert stats.spread_split(np.array([[1, 0], [0, 1]])) == (0.0, 0.25)
    # a seed right on both against one wrong on both: half of the variance 0.5 is shared
    assert stats.spread_split(np.array([[1, 1], [0, 0]])) == (0.25, 0.25)
    # 95% CI half-width t(n-1) * 0.02 / sqrt(n) first reaches 0.01 at n = 18 (t(17) = 2.110; at 17, t(16) = 2.120)
    assert stats.seeds_needed(0.01, 0.02) == 18
    assert stats.seeds_needed(0.0, 0.02) is None
    # 5 seeds, no shared spread: M = 0.0004 * 100 / (5 * 0.02^2 / t(4)^2) = 154.4 -> 155 examples
    assert stats.test_size_needed(0.02, 5, 0.0, 0.0004, 100) == 155
    # a shared spread wider than the difference: no test set resolves it
    assert stats.test_size_needed(0.02, 5, 0.001, 0.0004, 100) is None


# ---- fit --repeat and compare on real runs ----

def _features(tmp_path_factory: pytest.TempPathFactory, n: int, seed: int) -> str:
    """A feature-sequence dataset, (4, 64) float32 per example, 30% of it in the test split; converted
    in threads (no worker start-up)."""
    from shardkit.convert.examples import write_feature_sequences

    return _build(
        tmp_path_factory,
        ("compare-features", n, seed),
        lambda root: write_feature_sequences(os.path.join(root, "features.h5"), n, seed=seed, timesteps=4, dim=64),
        ["--kind", "array", "--data", "/features", "--label", "/labels", "--num-shards", "2", "--seed", str(seed), "--split", "0.6,0.1,0.3",
         "--workers", "1", "--worker-mode", "thread"],
    )


def _fit(dataset: str, out: Path, *extra: str) -> None:
    from shardkit.train import cli

    argv = ["fit", dataset, "--model", "sequence-lstm", "--batch-size", "32", "--verbose", "0", "--no-tensorboard",
            "--patience", "0", "--out", str(out), *extra]
    assert cli.main(argv) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny feature-sequence dataset; a trained configuration on seeds 0-2 and on seeds 3-5, and a
    barely trained one on seeds 0-2."""
    data = _features(tmp_path_factory, n=300, seed=0)
    root = tmp_path_factory.mktemp("compare-runs")
    _fit(data, root / "trained", "--epochs", "2", "--learning-rate", "0.01", "--repeat", "3")
    _fit(data, root / "trained-later-seeds", "--epochs", "2", "--learning-rate", "0.01", "--repeat", "3", "--seed", "3")
    _fit(data, root / "barely", "--epochs", "1", "--learning-rate", "0.00001", "--repeat", "3")
    return {"data": data, **{p.name: str(p) for p in root.iterdir()}}


def test_repeat_summary_has_per_seed_values_summed_confusion_and_predictions(runs: dict[str, str]) -> None:
    run = Path(runs["trained"])
    summary = json.loads((run / "summary.json").read_text())
    meta = json.loads((Path(runs["data"]) / "metadata.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert summary["dataset_id"] == meta["dataset_id"] and summary["settings"]["epochs"] == 2
    assert set(summary["test"]) == {"accuracy", "loss", "recall 0", "recall 1"}  # no averaged counts
    accuracy = summary["test"]["accuracy"]
    assert accuracy["n"] == 3 and accuracy["mean"] == pytest.approx(np.mean(accuracy["values"]))
    assert accuracy["ci95"] == pytest.approx(stats.t_ppf(0.975, 2) * np.std(accuracy["values"], ddof=1) / math.sqrt(3))
    examples = summary["test_examples"]
    matrices = [np.array(json.loads((run / f"seed-{s}" / "metrics.json").read_text())["test"]["confusion_matrix"]) for s in (0, 1, 2)]
    assert summary["confusion_matrix_sum"] == np.sum(matrices, axis=0).tolist()
    assert np.sum(summary["confusion_matrix_sum"]) == 3 * examples == 3 * sum(s["count"] for s in meta["splits"]["test"]["shards"])
    for seed, matrix, acc in zip((0, 1, 2), matrices, summary["test"]["accuracy"]["values"]):
        p = np.load(run / f"seed-{seed}" / "predictions_test.npz")
        assert len(np.unique(p["row_id"])) == examples
        assert np.mean(p["predicted"] == p["label"]) == pytest.approx(acc, abs=1e-6)
        assert np.array_equal(np.bincount(p["label"] * 2 + p["predicted"], minlength=4).reshape(2, 2), matrix)
    assert summary["test"]["recall 1"]["values"][0] == pytest.approx(matrices[0][1, 1] / matrices[0][1].sum())
    assert (run / "confusion_test_sum.png").stat().st_size > 0
    # everything the repeat wrote is a run's own file, so --overwrite may replace it
    from shardkit.train import rundir

    assert rundir.foreign_entries(str(run)) == [] and rundir.foreign_entries(str(run / "seed-0")) == []


def test_clearly_different_configurations_are_distinguishable(runs: dict[str, str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "shardkit.train", "compare", runs["trained"], runs["barely"], "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    verdict = proc.stdout.strip().splitlines()[-1]
    assert verdict.startswith("A - B = +") and "(95% CI, 3 seeds): distinguishable from seed noise" in verdict
    result = json.loads((out / "compare.json").read_text())
    assert result["distinguishable"] is True and result["verdict"] == verdict, proc.stdout
    assert result["seed_test"]["test"] == "paired" and result["seed_test"]["p"] < 0.05
    assert result["mcnemar"]["a_only_right"] > result["mcnemar"]["b_only_right"] and result["mcnemar"]["p"] < 0.05
    assert result["run_a"]["seeds"] == result["run_b"]["seeds"] == [0, 1, 2]
    assert result["settings_differ"] == {"epochs": [2, 1], "learning_rate": [0.01, 1e-05]}
    assert result["run_a"]["dir"] == os.path.abspath(runs["trained"])
    assert (out / "compare.png").stat().st_size > 0
    # per-seed accuracies are the summaries' own
    summary = json.loads((Path(runs["trained"]) / "summary.json").read_text())
    assert list(result["run_a"]["accuracy"].values()) == pytest.approx(summary["test"]["accuracy"]["values"], abs=1e-6)
    # an existing comparison is not replaced without --overwrite
    from shardkit.train import cli

    before = (out / "compare.json").read_bytes()
    capsys.readouterr()
    assert cli.main(["compare", runs["trained"], runs["barely"], "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"shardkit-train: error: {out / 'compare.json'}: exists; pass --overwrite to replace it, or choose another --out"
    ]
    assert (out / "compare.json").read_bytes() == before
    assert cli.main(["compare", runs["trained"], runs["barely"], "--out", str(out), "--overwrite"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == verdict


def test_same_configuration_on_other_seeds_is_not_distinguishable(runs: dict[str, str], tmp_path: Path, capsys) -> None:
    from shardkit.train import cli

    rc = cli.main(["compare", runs["trained"], runs["trained-later-seeds"], "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert "seed sets differ (A: 0,1,2; B: 3,4,5): Welch's unpaired t-test" in out[1]
    assert "unpaired): not distinguishable from seed noise" in out[-1] or out[-1].endswith("no difference in mean accuracy")
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["distinguishable"] is False and result["seed_test"]["test"] == "welch"
    assert result["settings_differ"] == {}


def test_refuses_single_runs_and_other_datasets_in_one_line(
    runs: dict[str, str], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys
) -> None:
    from shardkit.train import cli

    single = os.path.join(runs["trained"], "seed-0")
    assert cli.main(["compare", runs["trained"], single, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"shardkit-train: error: {single}: a single run, not repeated; compare needs runs made with fit --repeat N (N >= 2)"]

    other = _features(tmp_path_factory, n=60, seed=5)
    _fit(other, tmp_path / "other", "--epochs", "1", "--repeat", "2")
    capsys.readouterr()
    assert cli.main(["compare", runs["trained"], str(tmp_path / "other"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"shardkit-train: error: {runs['trained']} was trained on dataset ")
    assert err[0].endswith(": compare runs of the same dataset")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refuses_runs_tested_on_other_examples_of_the_same_dataset(runs: dict[str, str], tmp_path: Path, capsys) -> None:
    """A copy of the dataset whose test shard lost its second half keeps the dataset id; a run reading around
    the damage (--skip-corrupt) is tested on fewer examples, and compare refuses to pair it."""
    from shardkit.spec import read_metadata
    from shardkit.train import cli

    damaged = tmp_path / "damaged"
    shutil.copytree(runs["data"], damaged)
    shards = read_metadata(str(damaged)).shard_paths(str(damaged), "test")
    os.truncate(shards[0], os.path.getsize(shards[0]) // 2)
    _fit(str(damaged), tmp_path / "short", "--epochs", "1", "--repeat", "2", "--skip-corrupt")
    kept = json.loads((tmp_path / "short" / "summary.json").read_text())["test_examples"]
    full = json.loads((Path(runs["trained"]) / "summary.json").read_text())["test_examples"]
    assert 0 < kept < full
    capsys.readouterr()
    assert cli.main(["compare", runs["trained"], str(tmp_path / "short"), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"shardkit-train: error: {runs['trained']} and {tmp_path / 'short'} were tested on different test splits "
        f"({full} and {kept} examples, {kept} in common): compare runs tested on the same split"
    ]
    assert not (tmp_path / "c").exists()
