"""Smoke test of the benchmark suite: ``bench.run_all --quick`` at tiny sizes writes every section of the
report with its plots, GPU results (the GPU section run on the CPU here) merge into it, and the committed
docs/benchmarks.md is exactly what the code renders from the committed docs/benchmarks.json. No timing asserted."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not installed
from bench import reading, report, run_all, targets  # noqa: E402

HEADINGS = ("## Machine", "## Targets", "## 1. Conversion", "### Converter fast paths", "### Conversion at row scale",
            "## 2. Reading", "## 3. Storage", "## 4. Memory", "## 5. GPU", "## 6. Is my training input-bound?", "## Reproduce")
PLOTS = ("conversion.png", "reading.png", "reading_sweeps.png", "storage.png", "memory.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    root = tmp_path_factory.mktemp("bench")
    out = root / "docs" / "benchmarks.md"
    rc = run_all.main(["--quick", "--cache", str(root / "cache"), "--out", str(out)])
    return rc, out


def test_quick_run_writes_every_section_and_plot(quick_run: tuple[int, Path]) -> None:
    rc, out = quick_run
    results = json.loads((out.parent / "benchmarks.json").read_text())
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    assert rc == 0 and not errors, errors
    text = out.read_text()
    assert [h for h in HEADINGS if h in text] == list(HEADINGS)
    assert "failed in this run" not in text and "Could not render" not in text
    assert text.count("_Not measured in this run._") == 2  # the GPU and peers sections, which --quick leaves out
    for plot in PLOTS:
        assert (out.parent / "img" / plot).stat().st_size > 1000, plot
        assert f"(img/{plot})" in text
    cores = results["machine"]["usable_cores"]
    assert isinstance(cores, int) and cores >= 1 and f"| CPU | {results['machine']['cpu']} ({cores} usable cores" in text


def test_quick_run_numbers_are_consistent(quick_run: tuple[int, Path]) -> None:
    _, out = quick_run
    results = json.loads((out.parent / "benchmarks.json").read_text())
    storage = results["storage"]
    assert storage["naive"]["one-hot float32 (to_categorical)"] == 660 * 21 * 4
    codes = storage["encodings"]["amino-acid codes"]
    assert codes["payload_bytes_per_example"] == 660 and 660 < codes["bytes_per_example"] < 1000
    assert storage["encodings"]["array float16"]["bytes_per_example"] < storage["encodings"]["array float32"][
        "bytes_per_example"]
    for size in results["conversion"]["sizes"]:
        assert set(size["runs"]) == {"hand loop", "beam 1w", "beam 2w"}
        assert size["runs"]["beam 2w"]["peak_rss_bytes"] > 0
    scale = results["plan_scale"]
    assert scale["rows"] == 20_000 and scale["shards"] >= 3 and scale["local"]["driver_peak_rss_bytes"] > 0
    (fast,) = results["fast_paths"]["rows"]
    assert fast["library_rows_per_s"] > 0 and fast["shardkit_rows_per_s"] > 0
    readers = results["reading"]["readers"]
    assert readers["shardkit"]["examples"] < readers["unshuffled generator"]["examples"]  # train split only
    (point,) = results["memory"]["points"]
    assert point["n"] == 240 and point["shardkit"] > 0 and point["in-memory"] > 0
    for model, run in results["diagnose"]["runs"].items():
        assert run["model"] == model and run["verdict"].startswith("input-bound" if run["input_bound"] else "not ")
    verdicts = {v.target: v.result for v in targets.evaluate(results)}
    assert verdicts["amino-acid record vs float32 one-hot"] == "PASS"  # bytes, not timing: 1/73 of the one-hot
    judged = [t for t in verdicts if not t.startswith("GPU") and "peer" not in t]  # neither runs in --quick
    assert judged and all(verdicts[t].startswith(("PASS", "MISS")) for t in judged), verdicts


def test_peers_target_is_judged_against_the_fastest_peer_of_the_run() -> None:
    rows = [{"reader": "shardkit", "system": "shardkit", "warm_examples_per_s": 100.0},
            {"reader": "hf", "system": "HF flat", "warm_examples_per_s": 120.0},
            {"reader": "grain-0", "system": "Grain", "warm_examples_per_s": 50.0}]
    ((_, _, measured, passed),) = targets.peers({"peers": {"rows": rows}})
    assert passed is False and measured.startswith("0.83x") and "HF flat" in measured
    rows[1]["warm_examples_per_s"] = 90.0
    ((_, _, measured, passed),) = targets.peers({"peers": {"rows": rows}})
    assert passed is True and "HF flat" in measured
    assert targets.peers({})[0][3] == "not measured"


def test_gpu_section_runs_on_cpu_and_merges(quick_run: tuple[int, Path]) -> None:
    _, out = quick_run
    gpu_json = out.parent / "gpu.json"
    assert run_all.main(["--quick", "--only", "gpu", "--cache", str(out.parent.parent / "cache"), "--results",
                         str(gpu_json), "--no-render", "--gpu-backend", "tensorflow", "--gpu-precisions", "float32",
                         "--gpu-batch-sizes", "8", "--gpu-steps-per-execution", "1,3"]) == 0
    rows = json.loads(gpu_json.read_text())["gpu"]["rows"]
    assert [(r["model"], r["steps_per_call"]) for r in rows] == [(m, n) for m in ("knot-cnn", "protein-cnn") for n in (1, 3)]
    for r in rows:
        assert r["tiled"] > 1 and r["train_examples_per_epoch"] >= 200  # small train splits are tiled
        assert r["synthetic_step_ms"] > 0 and r["reader_step_ms"] > 0 and 0 <= r["idle_fraction"] < 1
        assert r["fit_reader_over_synthetic"] == pytest.approx(r["fit_step_ms"] / r["fit_synthetic_step_ms"])
    md = out.parent / "with-gpu.md"
    assert run_all.main(["--render-only", "--results", str(out.parent / "benchmarks.json"), "--gpu-results",
                         str(gpu_json), "--out", str(md)]) == 0
    text = md.read_text()
    assert "| knot-cnn | uint8 image | 8 | float32, 3 steps/call |" in text and "| protein-cnn | onehot | 8 | float32, 1 step/call |" in text
    assert "GPU model.fit step time, knot-cnn (batch 8, float32, 3 steps/call)" in text and "(img/gpu.png)" in text
    assert (out.parent / "img" / "gpu.png").stat().st_size > 1000


def test_committed_report_renders_from_committed_results(tmp_path: Path) -> None:
    for name in ("benchmarks.json", "benchmarks.md"):
        shutil.copy(ROOT / "docs" / name, tmp_path / name)
    assert run_all.main(["--render-only", "--results", str(tmp_path / "benchmarks.json"),
                         "--out", str(tmp_path / "benchmarks.md")]) == 0
    assert (tmp_path / "benchmarks.md").read_text() == (ROOT / "docs" / "benchmarks.md").read_text()
    assert report.KEEP.search((ROOT / "docs" / "benchmarks.md").read_text()), "hand-written blocks are kept"


def test_memory_sweep_judges_each_mode_where_both_ran() -> None:
    gb = 2**30
    points = [{"n": 1_000, "data_bytes": 0, "shardkit": 1.4 * gb, "in-memory": 1.5 * gb, "in-memory float32": 2 * gb},
              {"n": 2_000, "data_bytes": 0, "shardkit": 1.4 * gb, "in-memory": 1.6 * gb, "in-memory float32": 3 * gb},
              {"n": 150_000, "data_bytes": 0, "shardkit": 1.5 * gb, "in-memory": 16 * gb, "in-memory float32": None,
               "step_s": {"shardkit": 0.30, "in-memory": 0.31}}]
    assert reading._line_at(points[:2], "in-memory float32", 150_000) == pytest.approx(151 * gb)
    proj = reading.project(points)
    assert proj["shardkit_peak_bytes"] == 1.5 * gb
    assert proj["in-memory float32"]["bytes_per_example"] == pytest.approx(gb / 1_000)  # fitted on the two it ran
    verdicts = {v.target: v for v in targets.evaluate({"memory": {"points": points, "projection": proj}})}
    assert verdicts["training peak RSS, memory sweep: shardkit vs in-memory"].result == "PASS"
    assert "N=150,000" in verdicts["training peak RSS, memory sweep: shardkit vs in-memory"].measured
    assert verdicts["training step (epoch) time, memory sweep: shardkit vs in-memory"].result == "PASS"
    float32 = verdicts["training peak RSS, memory sweep: shardkit vs in-memory float32"]
    assert "N=2,000" in float32.measured and float32.result == "MISS"
