"""Datasets in S3 for the trainer: staged into a bounded local cache, since TensorFlow has no s3:// filesystem.

``stage("s3://bucket/ds", cache_dir)`` downloads a dataset's shards in parallel into
``cache_dir/<bucket>-<hash of the URL>-<dataset_id>/``, checks each shard's size against metadata.json, writes
metadata.json last and renames the folder into place, so a staged copy is complete exactly when it exists and
is reused while the dataset's id is unchanged. Least recently used copies are evicted to stay under the
cache's byte limit. The S3 endpoint and credentials come from boto3's usual settings (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...). A prefix without metadata.json is no dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shardkit.spec import METADATA_FILE, DatasetError, Metadata

PARALLEL = 8
DEFAULT_MAX_GB = 50.0


def is_staged_url(path: str) -> bool:
    """Dataset locations the trainer stages instead of reading directly (TensorFlow reads gs:// itself)."""
    return path.startswith("s3://")


def default_cache_dir() -> str:
    return os.environ.get("SHARDKIT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "shardkit")


def _client() -> Any:
    try:
        import boto3
    except ImportError:
        raise DatasetError("reading s3:// datasets needs boto3: pip install boto3") from None
    return boto3.client("s3")


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key.rstrip("/")


def read_remote_metadata(url: str, client: Any = None) -> Metadata:
    """metadata.json of the dataset at ``url``; DatasetError when there is none (the prefix is no dataset)."""
    client = client or _client()
    bucket, prefix = _split(url)
    try:
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/{METADATA_FILE}")["Body"].read()
    except client.exceptions.NoSuchKey:
        raise DatasetError(f"{url.rstrip('/')}/{METADATA_FILE}: missing; {url} is not a complete shardkit dataset") from None
    except client.exceptions.NoSuchBucket:
        raise DatasetError(f"{url}: no such bucket {bucket!r}") from None
    except Exception as e:  # noqa: BLE001 - botocore raises ClientError/EndpointConnectionError and more
        raise DatasetError(f"{url}: cannot read {METADATA_FILE}: {e}") from None
    try:
        return Metadata.from_dict(json.loads(body))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{url.rstrip('/')}/{METADATA_FILE}: invalid metadata: {e}") from e


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _make_room(cache_dir: str, needed: int, max_bytes: int, url: str) -> None:
    """Evict the least recently used staged datasets until ``needed`` more bytes fit under ``max_bytes``."""
    if needed > max_bytes:
        raise DatasetError(f"{url}: needs {needed / 1e9:.2f} GB of cache, more than the limit of "
                           f"{max_bytes / 1e9:.2f} GB: raise --cache-max-gb or convert with larger shards elsewhere")
    entries = [os.path.join(cache_dir, e) for e in os.listdir(cache_dir) if not e.startswith(".")]
    entries.sort(key=os.path.getmtime)
    used = sum(_size(e) for e in entries)
    while entries and used + needed > max_bytes:
        victim = entries.pop(0)
        used -= _size(victim)
        shutil.rmtree(victim, ignore_errors=True)


def stage(url: str, cache_dir: str | None = None, max_gb: float = DEFAULT_MAX_GB) -> str:
    """A complete local copy of the dataset at ``url`` in ``cache_dir``; returns its path."""
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    client = _client()
    meta = read_remote_metadata(url, client)
    bucket, prefix = _split(url)
    name = f"{bucket}-{hashlib.sha256(url.rstrip('/').encode()).hexdigest()[:8]}-{meta.dataset_id}"
    local = os.path.join(cache_dir, name)
    if os.path.exists(os.path.join(local, METADATA_FILE)):
        os.utime(local)
        return local
    os.makedirs(cache_dir, exist_ok=True)
    shards = [s for split in meta.splits.values() for s in split.shards]
    _make_room(cache_dir, sum(s.bytes for s in shards), int(max_gb * 1e9), url)
    tmp = os.path.join(cache_dir, f".{name}.staging-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)

    def fetch(shard: Any) -> None:
        path = os.path.join(tmp, shard.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        client.download_file(bucket, f"{prefix}/{shard.path}", path)
        if os.path.getsize(path) != shard.bytes:
            raise DatasetError(f"{url}/{shard.path}: is {os.path.getsize(path)} bytes but {METADATA_FILE} records "
                               f"{shard.bytes}: truncated or modified")

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(fetch, shards))
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            f.write(meta.to_json() + "\n")
        try:
            os.rename(tmp, local)
        except OSError:
            if not os.path.exists(os.path.join(local, METADATA_FILE)):  # else another process staged it first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except DatasetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:  # noqa: BLE001 - botocore's errors for a shard listed but not there
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{url}: cannot stage into {cache_dir}: {e}") from None
    os.utime(local, (time.time(), time.time()))
    return local
