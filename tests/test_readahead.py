"""Read-ahead: the reader asks for the shard bytes it is about to read (local disk) or downloads the shards it is
about to read (a bucket, through a bounded cache), without changing a single record or its order."""

from __future__ import annotations

import csv
import os
import threading
import time

import numpy as np
import pytest

from datasets import knots_dataset


def test_schedule_follows_the_interleave_order() -> None:
    from shardkit.train.readahead import schedule

    # two files of 10 records (10 bytes each) read 4 at a time, then a third: f0 0-3, f1 0-3, f0 4-7, f1 4-7, ...
    chunks = schedule([100, 100, 50], [10, 10, 5], cycle=2, block=4, chunk=30)
    assert chunks == [(0, 0, 0, 30), (3, 0, 30, 60), (4, 1, 0, 30), (7, 1, 30, 60), (10, 0, 60, 90),
                      (14, 1, 60, 90), (17, 0, 90, 100), (19, 1, 90, 100), (20, 2, 0, 30), (23, 2, 30, 50)]


def test_evict_empties_the_page_cache_and_reading_fills_it(tmp_path) -> None:
    from shardkit.train.readahead import evict, resident_fraction

    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(1 << 20))
    evict([str(path)])
    assert resident_fraction([str(path)]) == 0.0
    path.read_bytes()
    assert resident_fraction([str(path)]) == 1.0


def _row_ids(path: str, readahead_mb: float, epochs: int = 2, start_step: int = 0) -> list[np.ndarray]:
    from shardkit.train.dataset import ReadOptions, train_dataset

    options = ReadOptions(readahead_mb=readahead_mb, with_row_id=True, cycle_length=2)
    stream = train_dataset(path, 16, epochs, seed=3, start_step=start_step, options=options)
    return [x["row_id"].numpy() for x, _ in stream]


def test_read_ahead_keeps_every_record_and_its_order(tmp_path_factory) -> None:
    from shardkit.train.readahead import evict, resident_fraction
    from shardkit.train.opening import open_dataset

    path = knots_dataset(tmp_path_factory, n_per_class=40, size=16, num_shards=6)
    files = [p for s in ("train", "validation", "test") for p in open_dataset(path).shard_paths(s)]
    evict(files)
    assert resident_fraction(files) == 0.0
    tiny = 1e-3  # a budget smaller than one record
    assert [b.tolist() for b in _row_ids(path, tiny)] == [b.tolist() for b in _row_ids(path, 0)]
    assert [b.tolist() for b in _row_ids(path, 256, start_step=3)] == [b.tolist() for b in _row_ids(path, 0, start_step=3)]
    assert resident_fraction(open_dataset(path).shard_paths("train")) == 1.0


def test_read_ahead_stays_within_its_budget_ahead_of_the_reader(tmp_path_factory) -> None:
    from shardkit.train.opening import open_dataset
    from shardkit.train.readahead import ReadAhead, evict, resident_fraction

    path = knots_dataset(tmp_path_factory, n_per_class=200, size=32, num_shards=4)
    ds = open_dataset(path)
    paths, counts = ds.shard_paths("train"), ds.counts["train"]
    sizes = {p: os.path.getsize(p) for p in paths}
    total, budget, chunk = sum(sizes.values()), 256 << 10, 32 << 10

    def resident_bytes() -> float:
        deadline, last = time.time() + 10, -1.0
        while time.time() < deadline:  # WILLNEED returns before the bytes arrive
            now = resident_fraction(paths) * total
            if now == last:
                return now
            last = now
            time.sleep(0.2)
        return last

    evict(paths)
    ahead = ReadAhead(budget, cycle=2, block=16, sizes=sizes, chunk=chunk)
    ahead.start(paths, counts)
    first = resident_bytes()
    assert budget <= first <= budget + 3 * chunk + 4 * 4096, (first, total)
    ahead.advance(sum(counts))
    assert resident_bytes() == pytest.approx(total, abs=4 * 4096)


from test_object_store import bucket, s3_server, upload_dataset, use_s3_server  # noqa: E402,F401 - the loopback S3 fixtures


def _history(run: str) -> list[dict[str, str]]:
    with open(os.path.join(run, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_fit_on_a_bucket_downloads_ahead_into_a_bounded_cache(tmp_path_factory, s3_server, bucket, tmp_path,
                                                              monkeypatch, capsys) -> None:
    import json

    from shardkit.spec import read_metadata
    from shardkit.train import cli, staging

    client, name = bucket
    local = knots_dataset(tmp_path_factory, n_per_class=40, size=24, num_shards=12)
    upload_dataset(client, name, local, "ds")
    use_s3_server(monkeypatch, s3_server)
    meta = read_metadata(local)
    shards = [s for split in meta.splits.values() for s in split.shards]
    bound = staging.min_cache_bytes(meta, 2) + max(s.bytes for s in shards)
    assert bound < sum(s.bytes for s in shards)  # the whole dataset never fits
    cache_dir, seen, stop = tmp_path / "cache", [0], threading.Event()

    def size(path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:  # evicted meanwhile
            return 0

    def watch() -> None:  # bytes in the cache folder, shards being downloaded included
        while not stop.is_set():
            seen[0] = max(seen[0], sum(size(os.path.join(r, f)) for r, _, fs in os.walk(cache_dir) for f in fs
                                       if f != "metadata.json"))
            time.sleep(0.002)

    args = ["--model", "knot-cnn", "--epochs", "1", "--batch-size", "16", "--cycle-length", "2", "--seed", "1",
            "--verbose", "0", "--no-tensorboard"]
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rc = cli.main(["fit", f"s3://{name}/ds", "--out", str(tmp_path / "bucket"), *args,
                       "--cache-dir", str(cache_dir), "--cache-max-gb", str(bound / 1e9)])
    finally:
        stop.set()
        watcher.join()
    assert rc == 0, capsys.readouterr().err
    assert cli.main(["fit", local, "--out", str(tmp_path / "local"), *args]) == 0
    assert _history(str(tmp_path / "bucket")) == _history(str(tmp_path / "local")) and len(_history(str(tmp_path / "local"))) == 1
    test = [json.loads(open(tmp_path / r / "metrics.json").read())["test"] for r in ("bucket", "local")]
    assert test[0] == test[1]
    (streamed,) = [str(p) for p in cache_dir.iterdir()]
    cache = staging.STREAMS[streamed]
    assert 0 < seen[0] <= bound and cache.peak <= bound
    assert cache.downloads > len(shards)  # shards were evicted and downloaded again: never all local at once
    assert cache.first_open < max(cache.first_fetched.values())  # reading began before the last shard arrived


def test_bench_cold_says_it_read_from_the_disk_and_names_the_limit(tmp_path_factory, capsys) -> None:
    import json

    from shardkit.train.cli import main
    from shardkit.train.diagnose import Diagnosis

    path = knots_dataset(tmp_path_factory, n_per_class=20, size=64, num_shards=2)
    bench = ["bench", path, "--model", "knot-cnn", "--batch-size", "8", "--steps", "2", "--warmup", "1"]
    assert main([*bench, "--cold", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["regime"] == "cold" and out["resident_fraction"] == 0.0 and out["disk_examples_per_s"] > 0
    d = Diagnosis(**{k: v for k, v in out.items() if k not in ("input_bound", "verdict")})
    limit, fix = d.limit()
    assert out["verdict"].endswith(f"; measured cold: shards read from the disk; the limit is {limit}: {fix}")
    # knot-cnn on a CPU trains far slower than 60 small images are read: the model (or the CPU it shares) limits
    assert limit in ("the model", "the CPU, shared by reading and training"), out["verdict"]


def test_verdict_names_the_fix_for_each_limit() -> None:
    from shardkit.train.diagnose import Diagnosis

    def verdict(reader: float, disk: float | None, regime: str = "cold", shards: int = 32, fed: float = 95) -> str:
        return Diagnosis("d", "m", 32, 10, reader, 100, fed, regime, 0.0 if regime == "cold" else 1.0, disk, 256,
                         shards, 8).verdict()

    assert verdict(50, 200).endswith("the limit is the reader (25% of the disk's 200 ex/s): raise --readahead-mb (now 256)")
    assert verdict(50, 55).endswith("the limit is the disk (the reader gets 91% of its 55 ex/s): faster storage, or a "
                                    "dataset that fits in the page cache")
    assert verdict(50, 200, shards=2).endswith("the limit is the reader: add shards: the train split has 2, fewer "
                                               "than the 8 read at once (shardkit-convert --num-shards 8 or more)")
    assert verdict(50, None, "warm").endswith("measured warm: shards in the page cache; the limit is the reader: "
                                              "raise --cycle-length (now 8) or give the job more CPU cores")
    assert verdict(500, 600, fed=60).endswith("the limit is the CPU, shared by reading and training: give the job "
                                              "more CPU cores")
    assert "the limit is the model" in verdict(500, 600) and verdict(500, 600).startswith("not input-bound")
