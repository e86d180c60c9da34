"""Peers section: the same class-sorted knot rows written to and read through HF datasets, Grain + ArrayRecord,
WebDataset and Mosaic Streaming (each as documented, and one tuned variant) beside shardkit's default
``training_input``: warm and cold ex/s, cold vs the disk, bytes on disk, conversion time, peak RSS, epoch order."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from typing import Any, Iterator

import numpy as np

from shardkit.train.readahead import evict, parallel_read

from bench import conversion, inputs
from bench.measure import child, median, run_measured, timed
from bench.order import order_metrics, two_epochs

ROWS, BATCH, SHAPE = 12_864, 64, (128, 128, 3)  # 201 whole batches of 64, whole classes of three
PIXELS = int(np.prod(SHAPE))
SHARD_BYTES = 128 << 20  # for the peers whose shard size is ours to choose: shardkit's default
EXTRA = "pip install -e '.[bench-peers]'"
# row -> (on-disk layout, reader, the distributions it needs)
SYSTEMS = {
    "shardkit, default training_input": ("shardkit", "shardkit", ()),
    "HF datasets, documented Array3D column": ("hf-array3d", "hf", ("datasets",)),
    "HF datasets, flat List(uint8) column": ("hf-flat", "hf", ("datasets",)),
    "HF datasets, flat column as a 64-shard IterableDataset, 1,000 buffer": ("hf-flat", "hf-iterable", ("datasets",)),
    "Grain + ArrayRecord, default ReadOptions (16 threads)": ("arrayrecord", "grain-16", ("grain", "array-record")),
    "Grain + ArrayRecord, 0 read threads": ("arrayrecord", "grain-0", ("grain", "array-record")),
    "WebDataset, documented 1,000-sample shuffle buffer": ("wds", "wds-1000", ("webdataset",)),
    "WebDataset, 10,000-sample shuffle buffer": ("wds", "wds-10000", ("webdataset",)),
    "Mosaic Streaming, documented (DataLoader, 0 workers)": ("mds", "mds-0", ("mosaicml-streaming", "torch")),
    "Mosaic Streaming, DataLoader 2 workers": ("mds", "mds-2", ("mosaicml-streaming", "torch")),
}
MODULES = {"datasets": "datasets", "grain": "grain", "array-record": "array_record", "webdataset": "webdataset",
           "mosaicml-streaming": "streaming", "torch": "torch"}  # distribution -> module


def hf_rows(src: str, flat: bool) -> Iterator[dict[str, Any]]:
    return ({"image": x if flat else x.reshape(SHAPE), "label": y, "row_id": i} for i, x, y in inputs.knot_rows(src))


def write(layout: str, src: str, out: str) -> None:
    """Write the source rows in ``layout`` as each library's documentation shows."""
    if layout.startswith("hf"):
        import datasets

        flat = layout == "hf-flat"
        image = datasets.List(datasets.Value("uint8"), length=PIXELS) if flat else datasets.Array3D(SHAPE, "uint8")
        int64 = datasets.Value("int64")
        features = datasets.Features({"image": image, "label": int64, "row_id": int64})
        datasets.Dataset.from_generator(hf_rows, features=features, cache_dir=out + ".hf-cache",
                                        gen_kwargs={"src": src, "flat": flat}).save_to_disk(out)
        shutil.rmtree(out + ".hf-cache")
    elif layout == "arrayrecord":
        from array_record.python.array_record_module import ArrayRecordWriter

        os.makedirs(out)
        per, writer = SHARD_BYTES // (PIXELS + 16), None
        for i, x, y in inputs.knot_rows(src):
            if i % per == 0:
                writer and writer.close()
                writer = ArrayRecordWriter(os.path.join(out, f"data-{i // per:05d}.array_record"), "group_size:1")
            writer.write(np.array([i, y], np.int64).tobytes() + x.tobytes())
        writer.close()
    elif layout == "wds":
        import webdataset as wds

        os.makedirs(out)
        with wds.ShardWriter(os.path.join(out, "data-%06d.tar"), maxsize=SHARD_BYTES, verbose=0) as sink:
            for i, x, y in inputs.knot_rows(src):
                sink.write({"__key__": f"{i:08d}", "npy": x.reshape(SHAPE), "cls": y})
    elif layout == "mds":
        from streaming import MDSWriter

        with MDSWriter(out=out, columns={"image": "ndarray:uint8:128,128,3", "label": "int", "row_id": "int"}) as sink:
            for i, x, y in inputs.knot_rows(src):
                sink.write({"image": x.reshape(SHAPE), "label": y, "row_id": i})


def batches(reader: str, path: str, epochs: int) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
    """(images uint8, labels, row ids or None) batches of ``epochs`` epochs, globally shuffled as each reader does."""
    if reader == "shardkit":
        from shardkit.train.dataset import training_input
        from shardkit.train.decode import as_numpy

        for x, y in as_numpy(training_input(path, BATCH, epochs, seed=0).train):
            yield x, y, None
    elif reader == "hf":
        import datasets

        ds = datasets.load_from_disk(path).with_format("numpy")
        for epoch in range(epochs):
            for b in ds.shuffle(seed=epoch).iter(batch_size=BATCH):
                yield b["image"].reshape(-1, *SHAPE), b["label"], b["row_id"]
    elif reader == "hf-iterable":  # HF's advice for fast shuffled reading: shards shuffled, then a buffer
        import datasets

        ds = datasets.load_from_disk(path).to_iterable_dataset(num_shards=64).shuffle(seed=0, buffer_size=1_000)
        ds = ds.with_format("numpy")
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            for b in ds.iter(batch_size=BATCH):
                yield b["image"].reshape(-1, *SHAPE), b["label"], b["row_id"]
    elif reader.startswith("grain"):
        import grain

        def parse(record: bytes) -> dict[str, Any]:
            head = np.frombuffer(record, np.int64, 2)
            return {"image": np.frombuffer(record, np.uint8, offset=16).reshape(SHAPE), "label": head[1], "id": head[0]}

        files = sorted(os.path.join(path, f) for f in os.listdir(path))
        ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(files)).shuffle(seed=0).repeat(epochs)
        options = grain.ReadOptions() if reader == "grain-16" else grain.ReadOptions(num_threads=0)
        for b in ds.map(parse).batch(BATCH).to_iter_dataset(options):
            yield b["image"], b["label"], b["id"]
    elif reader.startswith("wds"):
        import webdataset as wds

        files = sorted(os.path.join(path, f) for f in os.listdir(path))
        ds = (wds.WebDataset(files, shardshuffle=100, empty_check=False).shuffle(int(reader.split("-")[1])).decode()
              .to_tuple("npy", "cls", "__key__").batched(BATCH))
        for _ in range(epochs):
            for x, y, keys in ds:
                yield x, np.asarray(y), np.array(keys, np.int64)
    elif reader.startswith("mds"):
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory
        from torch.utils.data import DataLoader

        clean_stale_shared_memory()
        ds = StreamingDataset(local=path, shuffle=True, shuffle_seed=0, batch_size=BATCH)
        loader = DataLoader(ds, batch_size=BATCH, num_workers=int(reader.split("-")[1]))
        for _ in range(epochs):
            for b in loader:
                yield b["image"].numpy(), b["label"].numpy(), b["row_id"].numpy()


def epoch_times(reader: str, path: str, epochs: int) -> tuple[list[float], list[np.ndarray]]:
    """Seconds of each epoch of one stream at the rate after its first batch (setup and tracing excluded alike),
    and the row ids of its epochs (empty where the reader has none)."""
    stream, times, ids = batches(reader, path, epochs), [], []
    for _ in range(epochs):
        x, y, i = next(stream)  # the clock starts at the epoch's first batch: no system's setup is timed
        first = len(y)
        start, n, seen = time.perf_counter(), first, [i]
        while n < ROWS:
            x, y, i = next(stream)
            n += len(y)
            seen.append(i)
        times.append((time.perf_counter() - start) * n / (n - first))  # the epoch's rate, its first batch untimed
        if seen[0] is not None:
            ids.append(np.concatenate(seen))
    return times, ids


def files(path: str) -> list[str]:
    return [os.path.join(root, f) for root, _, names in os.walk(path) for f in names]


def read_child(reader: str, path: str, with_order: bool) -> dict[str, Any]:
    """One round in a fresh process, its libraries imported first: a cold epoch (files evicted), the disk rate (4
    sequential readers, files evicted), then 2 epochs of one stream, the second timed warm (epochs 0 and 1: order)."""
    needs = next(needs for _, r, needs in SYSTEMS.values() if r == reader)
    for module in [MODULES[d] for d in needs] or ["shardkit.train.dataset"]:
        importlib.import_module(module)
    paths = files(path)
    evict(paths)
    cold = epoch_times(reader, path, 1)[0][0]
    evict(paths)
    disk = timed(parallel_read, paths, 4, 4 << 20)
    warm, ids = epoch_times(reader, path, 2)
    if reader == "shardkit" and with_order:
        ids = list(two_epochs(path, BATCH))
    return {"cold_s": cold, "disk_s": disk, "warm_s": warm[1:],
            "order": order_metrics(ids[0], ids[1], BATCH) if with_order else None}


def convert(layout: str, src: str, out: str) -> dict[str, Any]:
    """Convert once per cache, in a measured process; its wall time and peak RSS are kept beside the output."""
    record = out + ".conversion.json"
    if os.path.exists(record) and os.path.exists(out):
        with open(record, encoding="utf-8") as f:
            return json.load(f)
    shutil.rmtree(out, ignore_errors=True)
    if layout == "shardkit":
        run = conversion.convert([src, "--out", out, "--overwrite", "--quiet", *inputs.ARGS["knots"],
                                  "--image-shape", ",".join(map(str, SHAPE)), "--split", "1,0,0"])
    else:
        run = run_measured(child(write, layout, src, out))
    done = {"seconds": run.wall_s, "peak_rss_bytes": run.peak_rss_bytes, "bytes": sum(map(os.path.getsize, files(out)))}
    with open(record, "w", encoding="utf-8") as f:
        json.dump(done, f)
    return done


def installed(dist: str) -> bool:
    return importlib.util.find_spec(MODULES[dist]) is not None


def last_line(e: Exception) -> str:
    return str(e).strip().splitlines()[-1][:300]


def measure(cache: str, repeats: int = 3) -> dict[str, Any] | None:
    """The peers table: every system ``repeats`` rounds, round robin (load hits all alike); None, after one line,
    when no peer library is installed."""
    if not any(all(map(installed, needs)) for *_, needs in SYSTEMS.values() if needs):
        print(f"[bench] peers: skipped, the bench-peers extra is not installed ({EXTRA})", flush=True)
        return None
    src = inputs.source(cache, "knots", ROWS)
    rows: dict[str, dict[str, Any]] = {}
    for name, (layout, reader, needs) in SYSTEMS.items():
        rows[name] = {"system": name, "layout": layout, "reader": reader,
                      "versions": {d: importlib.metadata.version(d) if installed(d) else "not installed"
                                   for d in needs}}
        if lack := [d for d in needs if not installed(d)]:
            rows[name]["skipped"] = f"{', '.join(lack)} not installed ({EXTRA})"
            continue
        try:
            rows[name]["conversion"] = convert(layout, src, os.path.join(cache, f"peers-{layout}-{ROWS}"))
        except Exception as e:
            rows[name]["skipped"] = f"conversion failed: {last_line(e)}"
    runs: dict[str, list[Any]] = {name: [] for name, r in rows.items() if "skipped" not in r}
    for r in range(repeats):
        for name in runs:
            path = os.path.join(cache, f"peers-{rows[name]['layout']}-{ROWS}")
            try:
                runs[name].append(run_measured(child(read_child, rows[name]["reader"], path, r == 0)))
            except Exception as e:
                rows[name]["skipped"] = f"reading failed: {last_line(e)}"
    for name, done in runs.items():
        if not done or "skipped" in rows[name]:
            continue
        cold, disk = median([d.result["cold_s"] for d in done]), median([d.result["disk_s"] for d in done])
        rows[name].update({"warm_examples_per_s": ROWS / median([t for d in done for t in d.result["warm_s"]]),
                           "cold_examples_per_s": ROWS / cold, "disk_examples_per_s": ROWS / disk,
                           "cold_vs_disk": disk / cold, "peak_rss_bytes": max(d.peak_rss_bytes for d in done),
                           "order": done[0].result["order"], "rounds": len(done)})
    return {"rows": list(rows.values()), "examples": ROWS, "batch_size": BATCH, "repeats": repeats,
            "from_first_batch": True, "shard_bytes": SHARD_BYTES,
            "shardkit_version": importlib.metadata.version("shardkit")}
