"""Datasets in S3 for the trainer: a bounded local cache, since TensorFlow has no s3:// filesystem.

``stream("s3://bucket/ds", cache_dir)`` (fit, evaluate, bench) makes a local folder holding metadata.json only;
its ``ShardCache`` downloads each shard when the reader opens it, and the reader's read-ahead downloads the
upcoming ones in reading order, so training starts at once and the folder stays under its byte limit: shards
no reader holds open are evicted, least recently used first. ``stage("s3://bucket/ds", cache_dir)`` downloads a dataset's shards in parallel into
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
import threading
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


def _cache_entry(url: str, cache_dir: str | None) -> tuple[str, Any, Metadata, str]:
    """(cache folder, S3 client, the dataset's metadata, the folder a complete local copy of it has in the cache):
    one folder per URL and dataset id, so a dataset converted again is never read from an older copy."""
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    client = _client()
    meta = read_remote_metadata(url, client)
    bucket, _ = _split(url)
    name = f"{bucket}-{hashlib.sha256(url.rstrip('/').encode()).hexdigest()[:8]}-{meta.dataset_id}"
    return cache_dir, client, meta, os.path.join(cache_dir, name)


def stage(url: str, cache_dir: str | None = None, max_gb: float = DEFAULT_MAX_GB) -> str:
    """A complete local copy of the dataset at ``url`` in ``cache_dir``; returns its path."""
    cache_dir, client, meta, local = _cache_entry(url, cache_dir)
    bucket, prefix = _split(url)
    if os.path.exists(os.path.join(local, METADATA_FILE)):
        os.utime(local)
        return local
    os.makedirs(cache_dir, exist_ok=True)
    shards = [s for split in meta.splits.values() for s in split.shards]
    _make_room(cache_dir, sum(s.bytes for s in shards), int(max_gb * 1e9), url)
    tmp = os.path.join(cache_dir, f".{os.path.basename(local)}.staging-{os.getpid()}")
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


STREAMS: dict[str, "ShardCache"] = {}  # local folder of a streamed dataset -> its cache
STREAM_SUFFIX = "-stream"


class ShardCache:
    """The shards of one bucket dataset in a local folder of at most ``max_bytes``: downloaded when a reader
    opens one (``ensure``, which waits for room) or ahead of it (``request``, which never waits)."""

    def __init__(self, url: str, local: str, meta: Metadata, max_bytes: int, client: Any) -> None:
        self.url, self.local, self.max_bytes, self.client = url.rstrip("/"), local, max_bytes, client
        self.bucket, self.prefix = _split(url)
        self.sizes = {os.path.join(local, s.path): s.bytes for split in meta.splits.values() for s in split.shards}
        self.present: dict[str, float] = {}  # path -> last use
        self.loading: dict[str, threading.Event] = {}
        self.used_once: set[str] = set()
        self.refs: dict[str, int] = {}
        self.used = self.peak = self.downloads = 0
        self.first_open = 0.0
        self.first_fetched: dict[str, float] = {}  # path -> when it was first downloaded
        self.errors: dict[str, str] = {}
        self.cv = threading.Condition()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="shardkit-download")
        for path in self.sizes:  # shards left by an earlier run
            if os.path.exists(path) and os.path.getsize(path) == self.sizes[path]:
                self.present[path] = os.path.getmtime(path)
                self.used += self.sizes[path]

    def _room(self, size: int, evict_unused: bool) -> bool:
        """Evict shards nobody holds (least recently used; unread downloads only if ``evict_unused``) until
        ``size`` more bytes fit; False when they cannot now. Called under ``cv``."""
        victims = sorted((t, p) for p, t in self.present.items() if not self.refs.get(p)
                         and (evict_unused or p in self.used_once))
        while self.used + size > self.max_bytes and victims:
            _, victim = victims.pop(0)
            del self.present[victim]
            self.used -= self.sizes[victim]
            os.remove(victim)
        return self.used + size <= self.max_bytes

    def _download(self, path: str, done: threading.Event) -> None:
        tmp = f"{path}.part-{threading.get_ident()}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.client.download_file(self.bucket, f"{self.prefix}/{os.path.relpath(path, self.local)}", tmp)
            if os.path.getsize(tmp) != self.sizes[path]:
                raise DatasetError(f"{self.url}/{os.path.relpath(path, self.local)}: is {os.path.getsize(tmp)} bytes "
                                   f"but {METADATA_FILE} records {self.sizes[path]}: truncated or modified")
            os.replace(tmp, path)
        except Exception as e:  # noqa: BLE001 - botocore's errors too; ensure() reports it
            self.errors[path] = str(e).splitlines()[0] if str(e) else type(e).__name__
            if os.path.exists(tmp):
                os.remove(tmp)
        with self.cv:
            del self.loading[path]
            if path in self.errors:
                self.used -= self.sizes[path]
            else:
                self.present[path] = time.time()
                self.downloads += 1
                self.first_fetched.setdefault(path, time.time())
            done.set()
            self.cv.notify_all()

    def _start(self, path: str, evict_unused: bool) -> bool:
        """Start downloading ``path`` if there is room (under ``cv``); True when it is present or on its way."""
        if path in self.present or path in self.loading:
            return True
        if not self._room(self.sizes[path], evict_unused):
            return False
        self.used += self.sizes[path]
        self.peak = max(self.peak, self.used)
        self.loading[path] = threading.Event()
        self.errors.pop(path, None)
        self.pool.submit(self._download, path, self.loading[path])
        return True

    def request(self, path: str, start: int = 0, end: int = 0) -> bool:
        """Download ``path`` ahead of the reader if it fits without evicting unread shards; False if not now."""
        with self.cv:
            return path not in self.sizes or self._start(path, evict_unused=False)

    def ensure(self, path: str) -> str:
        """Wait until ``path`` is here and hold it (until ``release``); DatasetError if it cannot be downloaded."""
        with self.cv:
            self.first_open = self.first_open or time.time()
            while True:
                if path in self.present:
                    self.refs[path] = self.refs.get(path, 0) + 1
                    self.present[path] = time.time()
                    return path
                if path in self.errors:
                    raise DatasetError(f"{self.url}: cannot download {os.path.relpath(path, self.local)}: "
                                       f"{self.errors.pop(path)}")
                if path in self.loading or not self._start(path, evict_unused=True):
                    self.cv.wait(1.0)

    def release(self, path: str) -> None:
        """The reader has read all of ``path``: it may be evicted."""
        with self.cv:
            self.refs[path] = max(0, self.refs.get(path, 0) - 1)
            self.present[path] = time.time()
            self.used_once.add(path)
            self.cv.notify_all()


def min_cache_bytes(meta: Metadata, cycle_length: int) -> int:
    """Room for the shards two readers (training, validation) hold open at once: tf.data's interleave opens its
    ``cycle_length`` shards and twice as many ahead of them."""
    held = sorted((sum(sorted((s.bytes for s in split.shards), reverse=True)[: 3 * cycle_length + 1])
                   for split in meta.splits.values()), reverse=True)
    return sum(held[:2])


def stream(url: str, cache_dir: str | None = None, max_gb: float = DEFAULT_MAX_GB, cycle_length: int = 8) -> str:
    """A local folder for the dataset at ``url`` whose shards ``ShardCache`` downloads as they are read."""
    cache_dir, client, meta, staged = _cache_entry(url, cache_dir)
    if os.path.exists(os.path.join(staged, METADATA_FILE)):  # a complete copy is here already
        os.utime(staged)
        return staged
    local = staged + STREAM_SUFFIX
    if local in STREAMS and os.path.exists(os.path.join(local, METADATA_FILE)):
        return local
    max_bytes, needed = int(max_gb * 1e9), min_cache_bytes(meta, cycle_length)
    if needed > max_bytes:
        raise DatasetError(f"{url}: needs at least {needed / 1e9:.3g} GB of cache to be read (the shards the reader "
                           f"holds open at once), more than --cache-max-gb {max_gb:g}: raise --cache-max-gb")
    os.makedirs(cache_dir, exist_ok=True)
    _make_room(cache_dir, needed, max_bytes, url)
    os.makedirs(local, exist_ok=True)
    os.utime(local)
    cache = ShardCache(url, local, meta, max_bytes, client)
    cache.max_bytes = max_bytes - sum(_size(os.path.join(cache_dir, e)) for e in os.listdir(cache_dir)
                                      if not e.startswith(".") and os.path.join(cache_dir, e) != local)
    with open(os.path.join(local, METADATA_FILE), "w", encoding="utf-8") as f:
        f.write(meta.to_json() + "\n")
    STREAMS[local] = cache
    return local
