"""Smoke test of the benchmark suite: ``bench.run_all --quick`` at tiny sizes writes every section of the
report with its plots, and GPU results (gpu_bench run on the CPU here) render into it. No timing asserted."""

from __future__ import annotations

import json
import os
import sys

import pytest
from datasets import knots_dataset, proteins_dataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/ is not installed
from bench import gpu_bench, report, run_all  # noqa: E402

HEADINGS = ("## Machine", "## Targets", "## 1. Conversion", "## 2. Reading", "## 3. Storage", "## 4. Memory",
            "## 5. GPU", "## 6. Is my training input-bound?", "## Reproduce")
PLOTS = ("conversion.png", "reading.png", "reading_sweeps.png", "storage.png", "memory.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = root / "docs" / "benchmarks.md"
    rc = run_all.main(["--quick", "--cache", str(root / "cache"), "--out", str(out)])
    return rc, out


def test_quick_run_writes_every_section_and_plot(quick_run):
    rc, out = quick_run
    results = json.loads((out.parent / "benchmarks.json").read_text())
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    assert rc == 0 and not errors, errors
    text = out.read_text()
    for heading in HEADINGS:
        assert heading in text
    assert "failed in this run" not in text and "Could not render" not in text
    for plot in PLOTS:
        assert (out.parent / "img" / plot).stat().st_size > 1000, plot
        assert f"(img/{plot})" in text
    assert "2 usable cores" in text or "usable cores" in text


def test_quick_run_numbers_are_consistent(quick_run):
    _, out = quick_run
    results = json.loads((out.parent / "benchmarks.json").read_text())
    storage = results["storage"]
    assert storage["naive"]["one-hot float32 (seed 001, to_categorical)"] == 660 * 21 * 4
    codes = storage["encodings"]["amino-acid codes"]
    assert codes["payload_bytes_per_example"] == 660 and 660 < codes["bytes_per_example"] < 1000
    assert storage["encodings"]["array float16"]["bytes_per_example"] < storage["encodings"]["array float32"][
        "bytes_per_example"]
    for size in results["conversion"]["sizes"]:
        assert set(size["runs"]) == {"hand loop", "beam 1w", "beam 2w"}
        assert size["runs"]["beam 2w"]["peak_rss_bytes"] > 0
    readers = results["reading"]["readers"]
    assert readers["shardkit"]["examples"] < readers["seed-000 generator"]["examples"]  # train split only
    assert {p["n"] for p in results["memory"]["points"]} == {120, 240}
    for model, run in results["diagnose"]["runs"].items():
        assert run["model"] == model and run["verdict"].startswith("input-bound" if run["input_bound"] else "not ")
    verdicts = report.render_targets(results)
    assert "**PASS**" in verdicts or "**MISS**" in verdicts


def test_gpu_bench_runs_on_cpu_and_renders(quick_run, tmp_path_factory):
    _, out = quick_run
    data = tmp_path_factory.mktemp("gpu-data")
    os.symlink(knots_dataset(tmp_path_factory, n_per_class=16, size=32, num_shards=2), data / "knots")
    os.symlink(proteins_dataset(tmp_path_factory, n=120, max_length=64, num_shards=2), data / "proteins")
    gpu_json = data / "gpu.json"
    assert gpu_bench.main(["--data", str(data), "--out", str(gpu_json), "--backend", "tensorflow",
                           "--precisions", "float32", "--steps", "2", "--warmup", "1", "--batch-size", "8",
                           "--min-epoch", "200"]) == 0
    rows = json.loads(gpu_json.read_text())["rows"]
    assert [r["model"] for r in rows] == ["knot-cnn", "protein-cnn"]
    for r in rows:
        assert r["tiled"] > 1 and r["train_examples_per_epoch"] >= 200  # small train splits are tiled
        assert r["synthetic_step_ms"] > 0 and r["reader_step_ms"] > 0 and 0 <= r["idle_fraction"] < 1
        assert r["fit_step_ms"] > 0 and r["fit_synthetic_step_ms"] > 0
        assert r["fit_reader_over_synthetic"] == pytest.approx(r["fit_step_ms"] / r["fit_synthetic_step_ms"])
    md = out.parent / "with-gpu.md"
    assert report.main([str(out.parent / "benchmarks.json"), "--gpu-results", str(gpu_json), "--out", str(md)]) == 0
    text = md.read_text()
    assert "| knot-cnn | uint8 image | 8 | float32 |" in text and "| protein-cnn | onehot | 8 | float32 |" in text
    assert "GPU model.fit step time, knot-cnn (batch 8, float32)" in text and "(img/gpu.png)" in text
    assert (out.parent / "img" / "gpu.png").exists()


def test_memory_sweep_judges_each_mode_where_both_ran():
    from bench import memory_bench, targets

    gb = 2**30
    points = [{"n": 1_000, "data_bytes": 0, "shardkit": 1.4 * gb, "in-memory": 1.5 * gb, "in-memory float32": 2 * gb},
              {"n": 2_000, "data_bytes": 0, "shardkit": 1.4 * gb, "in-memory": 1.6 * gb, "in-memory float32": 3 * gb},
              {"n": 150_000, "data_bytes": 0, "shardkit": 1.5 * gb, "in-memory": 16 * gb, "in-memory float32": None,
               "step_s": {"shardkit": 0.30, "in-memory": 0.31}}]
    assert memory_bench._line_at(points[:2], "in-memory float32", 150_000) == pytest.approx(151 * gb)
    proj = memory_bench.project(points)
    assert proj["shardkit_peak_bytes"] == 1.5 * gb
    assert proj["in-memory float32"]["bytes_per_example"] == pytest.approx(gb / 1_000)  # fitted on the two it ran
    verdicts = {v.target: v for v in targets.memory_scaling({"memory": {"points": points, "projection": proj}})}
    assert verdicts["training peak RSS, memory sweep: shardkit vs in-memory"].result == "PASS"
    assert "N=150,000" in verdicts["training peak RSS, memory sweep: shardkit vs in-memory"].measured
    assert verdicts["training step (epoch) time, memory sweep: shardkit vs in-memory"].result == "PASS"
    float32 = verdicts["training peak RSS, memory sweep: shardkit vs in-memory float32"]
    assert "N=2,000" in float32.measured and float32.result == "MISS"
