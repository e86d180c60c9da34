"""Object storage end to end: a real S3 API (moto in server mode on loopback) reached through Beam's S3
filesystem, for output, inputs (HDF5 and Parquet part files) and training."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Any, Iterator

import pytest

from bench.object_store import CREDS, s3_args
from conftest import IMAGE_ARGS, run_convert, shard_bytes

pytest.importorskip("boto3")
pytest.importorskip("moto")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: Any) -> Iterator[str]:
    """``python -m moto.server`` on 127.0.0.1 on a free port, in its own process, stopped at the end."""
    from bench.object_store import loopback_s3

    with loopback_s3(str(tmp_path_factory.mktemp("moto") / "server.log")) as (url, _):
        yield url




@pytest.fixture
def bucket(s3_server: str) -> tuple[Any, str]:
    """A fresh, empty bucket: (boto3 client, bucket name)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, **CREDS)
    name = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def download(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every shard under ``prefix``, relative path -> bytes (as ``shard_bytes`` gives for a local dataset)."""
    return {k[len(prefix) + 1:]: client.get_object(Bucket=bucket, Key=k)["Body"].read()
            for k in keys(client, bucket, prefix + "/") if ".tfrecord" in k}


def test_s3_output_gets_the_pipeline_options(knots_h5: str, s3_server: str, bucket, tmp_path) -> None:
    client, name = bucket
    local = str(tmp_path / "local")
    assert run_convert([knots_h5, "--out", local, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"])[0] == 0
    rc, err = run_convert([knots_h5, "--out", f"s3://{name}/ds", *IMAGE_ARGS, "--num-shards", "2", "--workers", "1",
                           "--quiet", "--", *s3_args(s3_server)])
    assert rc == 0, err
    assert download(client, name, "ds") == shard_bytes(local) and len(shard_bytes(local)) == 4
    assert keys(client, name) == ["ds/metadata.json"] + sorted(f"ds/{k}" for k in shard_bytes(local))


def test_s3_killed_driver_publishes_nothing_and_a_rerun_publishes(knots_h5: str, s3_server: str, bucket) -> None:
    client, name = bucket
    argv = [sys.executable, "-m", "shardkit.convert", knots_h5, "--out", f"s3://{name}/ds", *IMAGE_ARGS,
            "--num-shards", "2", "--workers", "1", "--quiet", "--", *s3_args(s3_server)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not [k for k in keys(client, name) if "/_plan/" in k]:  # the job is about to start
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = keys(client, name)
    assert left and all(k.startswith(".ds.shardkit-tmp-") for k in left)  # nothing under ds/, no metadata.json
    rc, err = run_convert([knots_h5, "--out", f"s3://{name}/ds", *IMAGE_ARGS, "--num-shards", "2", "--workers", "1",
                           "--quiet", "--", *s3_args(s3_server)])
    assert rc == 0, err
    assert keys(client, name)[0] == "ds/metadata.json" and len(keys(client, name)) == 5  # stale temp prefix gone


def test_s3_prefix_without_metadata_is_not_a_dataset(knots_h5: str, s3_server: str, bucket, tmp_path) -> None:
    client, name = bucket
    out = ["--out", f"s3://{name}/ds", *IMAGE_ARGS, "--num-shards", "2", "--workers", "1", "--quiet", "--",
           *s3_args(s3_server)]
    client.put_object(Bucket=name, Key="ds/train/train-00000-of-00002.tfrecord", Body=b"left by a killed publish")
    rc, err = run_convert([knots_h5, *out])
    assert rc == 0, err
    assert b"killed" not in client.get_object(Bucket=name, Key="ds/train/train-00000-of-00002.tfrecord")["Body"].read()
    client.put_object(Bucket=name, Key="other/notes.txt", Body=b"mine")
    rc, err = run_convert([knots_h5, *[f"s3://{name}/other" if a == f"s3://{name}/ds" else a for a in out]])
    assert rc == 1
    assert err.splitlines()[0] == (f"shardkit-convert: error: s3://{name}/other: holds notes.txt but no metadata.json, "
                                   "so it is not a shardkit dataset; refusing to write into it: choose another --out")
    assert keys(client, name, "other/") == ["other/notes.txt"]


def split_h5(src: str, folder: str, cuts: list[int]) -> list[str]:
    """``src``'s /train_data and /train_label rows cut at ``cuts`` into part files (h5py, chunked by rows)."""
    import h5py

    os.makedirs(folder, exist_ok=True)
    with h5py.File(src, "r") as f:
        data, labels = f["/train_data"][:], f["/train_label"][:]
    bounds = [0, *cuts, len(labels)]
    paths = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        path = os.path.join(folder, f"part-{i:02d}.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset("train_data", data=data[a:b], chunks=(min(8, b - a),) + data.shape[1:])
            f.create_dataset("train_label", data=labels[a:b])
        paths.append(path)
    return paths


def split_parquet(src: str, folder: str, cuts: list[int]) -> list[str]:
    """``src`` cut into part files as Spark writes them, with the _SUCCESS and .crc files beside them."""
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    table = pq.read_table(src)
    bounds = [0, *cuts, table.num_rows]
    paths = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        path = os.path.join(folder, f"part-{i:05d}-abc.snappy.parquet")
        pq.write_table(table.slice(a, b - a), path, row_group_size=40)
        open(os.path.join(folder, f".part-{i:05d}-abc.snappy.parquet.crc"), "wb").write(b"crc")
        paths.append(path)
    open(os.path.join(folder, "_SUCCESS"), "wb").close()
    return paths


PROTEIN_ARGS = ["--kind", "sequence", "--data", "Sequence", "--label", "ec_lvl_1", "--max-length", "120"]


def test_glob_of_hdf5_parts_is_one_table(knots_h5: str, tmp_path) -> None:
    single = str(tmp_path / "single")
    assert run_convert([knots_h5, "--out", single, *IMAGE_ARGS, "--num-shards", "3", "--workers", "1"])[0] == 0
    split_h5(knots_h5, str(tmp_path / "parts"), [50, 51])  # a one-row part in the middle
    out = str(tmp_path / "glob")
    rc, err = run_convert([str(tmp_path / "parts" / "*.h5"), "--out", out, *IMAGE_ARGS, "--num-shards", "3",
                           "--workers", "2"])
    assert rc == 0, err
    assert shard_bytes(out) == shard_bytes(single)  # same rows, same row ids, whatever the worker count
    from shardkit.spec import read_metadata

    assert read_metadata(out).source["inputs"][0]["files"] == 3


def test_folder_of_parquet_parts_is_one_table(proteins_parquet: str, tmp_path) -> None:
    single = str(tmp_path / "single")
    assert run_convert([proteins_parquet, "--out", single, *PROTEIN_ARGS, "--num-shards", "2", "--workers", "1"])[0] == 0
    split_parquet(proteins_parquet, str(tmp_path / "parts"), [120, 250])
    out = str(tmp_path / "folder")
    rc, err = run_convert([str(tmp_path / "parts"), "--out", out, *PROTEIN_ARGS, "--num-shards", "2", "--workers", "1"])
    assert rc == 0, err
    assert shard_bytes(out) == shard_bytes(single)


def test_glob_matching_nothing_is_one_line(tmp_path) -> None:
    rc, err = run_convert([str(tmp_path / "*.h5"), "--out", str(tmp_path / "o"), *IMAGE_ARGS])
    assert rc == 1
    assert err.splitlines() == [f"shardkit-convert: error: {tmp_path}/*.h5: matches no file",
                                "shardkit-convert: nothing was published"]


@pytest.fixture(scope="module")
def knots48_h5(tmp_path_factory: Any) -> str:
    """Knot images of 48x48x3 (6,912-byte rows), 40 per class, class-sorted in a PyTables EArray."""
    from shardkit.convert.examples import write_knots

    return write_knots(str(tmp_path_factory.mktemp("src") / "knots48.h5"), 40, size=48, seed=4)


IMAGE48 = ["--kind", "image", "--data", "/train_data", "--label", "/train_label", "--image-shape", "48,48,3"]


def test_hdf5_from_s3_reads_ranges_not_the_file(knots48_h5: str, s3_server: str, bucket, tmp_path) -> None:
    from shardkit.convert import ranged

    client, name = bucket
    client.upload_file(knots48_h5, name, "in/knots.h5")
    local = str(tmp_path / "local")
    assert run_convert([knots48_h5, "--out", local, *IMAGE48, "--num-shards", "4", "--workers", "1"])[0] == 0
    before = dict(ranged.FETCHED)
    rc, err = run_convert([f"s3://{name}/in/knots.h5", "--out", str(tmp_path / "s3in"), *IMAGE48, "--num-shards", "4",
                           "--workers", "1", "--quiet", "--", *s3_args(s3_server)])
    assert rc == 0, err
    assert shard_bytes(str(tmp_path / "s3in")) == shard_bytes(local)
    fetched = ranged.FETCHED["bytes"] - before["bytes"]
    written = sum(len(b) for b in shard_bytes(local).values())
    assert fetched < os.path.getsize(knots48_h5) * 1.5  # 6 shards: a download per shard would be 6 files
    assert fetched < 1.5 * written  # the driver's label reads plus each of the 6 shards' own rows


@pytest.mark.slow
def test_dask_runner_converts_bucket_inputs_into_the_bucket(knots_h5: str, proteins_parquet: str, s3_server: str,
                                                            bucket, tmp_path) -> None:
    """Two Dask worker processes that share nothing with the driver but the S3 API: HDF5 and Parquet part
    files in, shards out, the bytes of a local conversion of the same files."""
    from bench.plan_scale import DASK_RUNNER, loopback_dask

    client, name = bucket
    client.upload_file(knots_h5, name, "in/knots.h5")
    for path in split_parquet(proteins_parquet, str(tmp_path / "parts"), [120, 250]):
        client.upload_file(path, name, "in/parts/" + os.path.basename(path))
    client.put_object(Bucket=name, Key="in/parts/_SUCCESS", Body=b"")
    jobs = [(knots_h5, f"s3://{name}/in/knots.h5", IMAGE_ARGS, "knots"),
            (str(tmp_path / "parts"), f"s3://{name}/in/parts/", PROTEIN_ARGS, "proteins")]
    with loopback_dask(workers=2) as address:
        for local_in, url, args, ds in jobs:
            local = str(tmp_path / ds)
            assert run_convert([local_in, "--out", local, *args, "--num-shards", "3", "--workers", "1"])[0] == 0
            rc, err = run_convert([url, "--out", f"s3://{name}/{ds}", *args, "--num-shards", "3", "--quiet", "--",
                                   DASK_RUNNER, f"--dask_client_address={address}", *s3_args(s3_server)])
            assert rc == 0, err
            assert download(client, name, ds) == shard_bytes(local) and len(shard_bytes(local)) == 5
    assert not [k for k in keys(client, name) if ".shardkit-tmp-" in k]


def use_s3_server(monkeypatch: Any, endpoint: str) -> None:
    """Point boto3 (as the trainer uses it) at the loopback server with its test credentials."""
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": CREDS["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": CREDS["aws_secret_access_key"],
                       "AWS_DEFAULT_REGION": CREDS["region_name"]}.items():
        monkeypatch.setenv(key, value)


def upload_dataset(client: Any, bucket: str, local: str, prefix: str) -> None:
    for root, _, files in os.walk(local):
        for f in files:
            path = os.path.join(root, f)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, local)}")


def test_fit_on_a_dataset_in_s3_stages_it_into_the_cache(tmp_path_factory, s3_server: str, bucket, tmp_path,
                                                         monkeypatch, capsys) -> None:
    from datasets import knots_dataset

    from shardkit.spec import read_metadata
    from shardkit.train import cli, staging

    client, name = bucket
    local = knots_dataset(tmp_path_factory, n_per_class=40, size=32, num_shards=2)
    upload_dataset(client, name, local, "ds")
    use_s3_server(monkeypatch, s3_server)
    cache = tmp_path / "cache"
    rc = cli.main(["fit", f"s3://{name}/ds", "--model", "knot-cnn", "--epochs", "1", "--batch-size", "32",
                   "--out", str(tmp_path / "run"), "--verbose", "0", "--no-tensorboard", "--cache-dir", str(cache)])
    assert rc == 0, capsys.readouterr().err
    assert os.path.exists(tmp_path / "run" / "metrics.json")
    (staged,) = [str(p) for p in cache.iterdir()]
    assert shard_bytes(staged) == shard_bytes(local)
    assert read_metadata(staged).dataset_id == read_metadata(local).dataset_id and staged.endswith(
        read_metadata(local).dataset_id + staging.STREAM_SUFFIX)  # fit streams: shards downloaded as read
    size = sum(s.bytes for split in read_metadata(local).splits.values() for s in split.shards)
    capsys.readouterr()
    rc = cli.main(["fit", f"s3://{name}/ds", "--model", "knot-cnn", "--epochs", "1", "--batch-size", "32",
                   "--out", str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "small"), "--cache-max-gb",
                   str(size / 2e9)])
    assert rc == 2 and capsys.readouterr().err.startswith(f"shardkit-train: error: s3://{name}/ds: needs ")
    upload_dataset(client, name, local, "copy")
    second = staging.stage(f"s3://{name}/copy", str(cache), max_gb=size * 1.5 / 1e9)  # room for one copy
    assert [str(p) for p in cache.iterdir()] == [second] and second != staged  # the older copy was evicted
    rc = cli.main(["verify", f"s3://{name}/nothing-here"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (f"shardkit-train: error: s3://{name}/nothing-here/metadata.json: "
                                               f"missing; s3://{name}/nothing-here is not a complete shardkit dataset")


def test_compressed_hdf5_from_s3_is_read_chunk_by_chunk(knots_h5: str, s3_server: str, bucket, tmp_path) -> None:
    import h5py

    client, name = bucket
    with h5py.File(knots_h5, "r") as f:
        data, labels = f["/train_data"][:], f["/train_label"][:]
    packed = str(tmp_path / "gz.h5")
    with h5py.File(packed, "w") as f:
        f.create_dataset("train_data", data=data, chunks=(16,) + data.shape[1:], compression="gzip", shuffle=True)
        f.create_dataset("train_label", data=labels)
    client.upload_file(packed, name, "gz.h5")
    local = str(tmp_path / "local")
    assert run_convert([knots_h5, "--out", local, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"])[0] == 0
    rc, err = run_convert([f"s3://{name}/gz.h5", "--out", str(tmp_path / "s3gz"), *IMAGE_ARGS, "--num-shards", "2",
                           "--workers", "1", "--quiet", "--", *s3_args(s3_server)])
    assert rc == 0, err
    assert shard_bytes(str(tmp_path / "s3gz")) == shard_bytes(local)


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory: Any) -> Iterator[str]:
    """``gcp-storage-emulator`` (in memory) on a free loopback port; Beam's gcsio and google-cloud-storage
    reach it through STORAGE_EMULATOR_HOST, anonymously."""
    pytest.importorskip("gcp_storage_emulator")
    pytest.importorskip("google.cloud.storage")
    from bench.object_store import loopback_server

    argv = lambda port: [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",  # noqa: E731
                         "--port", str(port), "--in-memory"]
    with loopback_server(argv, "gcs emulator", str(tmp_path_factory.mktemp("gcs") / "server.log")) as (port, _):
        yield f"http://127.0.0.1:{port}"


def test_gs_input_and_output_through_an_emulator(knots_h5: str, gcs_server: str, tmp_path, monkeypatch) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from apache_beam.internal.gcp import auth

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    # Without Google credentials Beam retries for ~24 s before connecting anonymously, which is what it ends
    # up doing here: start from that outcome (the emulator needs no credentials).
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    client = storage.Client(credentials=AnonymousCredentials(), project="test")
    name = f"g-{uuid.uuid4().hex[:12]}"
    bucket = client.create_bucket(name)
    bucket.blob("in/knots.h5").upload_from_filename(knots_h5)
    local = str(tmp_path / "local")
    assert run_convert([knots_h5, "--out", local, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"])[0] == 0
    rc, err = run_convert([f"gs://{name}/in/knots.h5", "--out", f"gs://{name}/ds", *IMAGE_ARGS, "--num-shards", "2",
                           "--workers", "1", "--quiet", "--", "--project=test"])
    assert rc == 0, err
    blobs = sorted(b.name for b in client.list_blobs(name))
    assert blobs == ["ds/metadata.json", *sorted(f"ds/{k}" for k in shard_bytes(local)), "in/knots.h5"]
    assert {k: bucket.blob(f"ds/{k}").download_as_bytes() for k in shard_bytes(local)} == shard_bytes(local)


def test_s3_glob_of_hdf5_parts_is_one_table(knots_h5: str, s3_server: str, bucket, tmp_path) -> None:
    client, name = bucket
    for path in split_h5(knots_h5, str(tmp_path / "parts"), [37, 90]):
        client.upload_file(path, name, "parts/" + os.path.basename(path))
    client.put_object(Bucket=name, Key="parts/notes.txt", Body=b"not matched by the glob")
    single = str(tmp_path / "single")
    assert run_convert([knots_h5, "--out", single, *IMAGE_ARGS, "--num-shards", "3", "--workers", "1"])[0] == 0
    rc, err = run_convert([f"s3://{name}/parts/*.h5", "--out", str(tmp_path / "glob"), *IMAGE_ARGS, "--num-shards",
                           "3", "--workers", "1", "--quiet", "--", *s3_args(s3_server)])
    assert rc == 0, err
    assert shard_bytes(str(tmp_path / "glob")) == shard_bytes(single)


def test_s3_mistakes_are_one_line(knots_h5: str, s3_server: str, bucket, tmp_path) -> None:
    _, name = bucket
    cases = [
        ([knots_h5, "--out", "s3://no-such-bucket/ds"], "s3://no-such-bucket/ds: no bucket 'no-such-bucket' at "
                                                         f"{s3_server}"),
        ([f"s3://{name}/missing.h5", "--out", str(tmp_path / "o")],
         f"s3://{name}/missing.h5: no such file, folder or prefix"),
        ([f"s3://{name}/none/", "--out", str(tmp_path / "o")], f"s3://{name}/none/: no such file, folder or prefix"),
    ]
    for argv, message in cases:
        rc, err = run_convert([*argv, *IMAGE_ARGS, "--quiet", "--", *s3_args(s3_server)])
        assert (rc, err.splitlines()) == (1, [f"shardkit-convert: error: {message}",
                                              "shardkit-convert: nothing was published"])
    rc, err = run_convert([knots_h5, "--out", f"s3://{name}/ds", *IMAGE_ARGS, "--quiet", "--",
                           "--s3_endpoint_url=http://127.0.0.1:1", "--s3_region_name=us-east-1"])
    assert rc == 1 and err.startswith(f"shardkit-convert: error: s3://{name}/ds: cannot reach S3 at "
                                      "http://127.0.0.1:1 (")
