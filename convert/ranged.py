"""Range reads of one object in a store that Beam's FileSystems reach (s3://, gs://, hdfs://, ...).

``RangeFile`` is a seekable, read-only file object (what ``h5py.File`` opens) whose small reads come from a
little block cache (HDF5's metadata is read a few bytes at a time) and whose large reads are fetched exactly.
``read_ranges`` fetches many byte ranges at once, a few requests in flight, for reading rows directly.
Every byte fetched is counted, so a conversion can report what it read per byte it wrote.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CACHE_BLOCK = 16 << 10  # reads below this are served from aligned blocks of this size
CACHE_BLOCKS = 64
PARALLEL = 8  # range requests in flight per file

_COUNT_LOCK = threading.Lock()
FETCHED = {"bytes": 0, "requests": 0}  # this process's totals, for measurements
_S3_CLIENT: dict[str, Any] = {}  # the client for the FileSystems options in use


def _count(n: int) -> None:
    with _COUNT_LOCK:
        FETCHED["bytes"] += n
        FETCHED["requests"] += 1


class _S3Ranges:
    """Bounded ranged GETs on s3:// through the boto3 client Beam's S3 filesystem configures from the job's
    options (Beam's own reader asks for open-ended ranges and stops reading; these ask for the bytes needed)."""

    def __init__(self, path: str) -> None:
        from apache_beam.io.aws.clients.s3.boto3_client import Client
        from apache_beam.io.aws.s3io import parse_s3_path
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import PipelineOptions

        self.bucket, self.key = parse_s3_path(path)
        options = FileSystems._pipeline_options or PipelineOptions([])  # noqa: SLF001 - Beam has no getter
        with _COUNT_LOCK:
            if _S3_CLIENT.get("options") is not options:  # a boto3 client is slow to make; it is thread-safe
                _S3_CLIENT.update(options=options, client=Client(options=options).client)
            self.client = _S3_CLIENT["client"]

    def size(self) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])

    def get(self, start: int, end: int) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}")["Body"]
        return body.read()


class _StreamRanges:
    """Any other FileSystems scheme: seek and read on its unbuffered stream (one reader, so one at a time)."""

    def __init__(self, path: str) -> None:
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self.stream = getattr(f, "raw", f)
        self.lock = threading.Lock()
        self.path = path

    def size(self) -> int:
        from apache_beam.io.filesystems import FileSystems

        return int(FileSystems.match([self.path])[0].metadata_list[0].size_in_bytes)

    def get(self, start: int, end: int) -> bytes:
        with self.lock:
            self.stream.seek(start)
            out = bytearray()
            while len(out) < end - start:
                piece = self.stream.read(end - start - len(out))
                if not piece:
                    break
                out += piece
            return bytes(out)


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote object made of range requests."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._ranges: Any = _S3Ranges(path) if path.startswith("s3://") else _StreamRanges(path)
        self.size = self._ranges.size()
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    def _get(self, start: int, end: int) -> bytes:
        data = self._ranges.get(start, end)
        _count(len(data))
        if len(data) != end - start:
            raise OSError(f"{self.path}: short read at byte {start}: {len(data)} of {end - start} bytes")
        return data

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes, fetched exactly (format detection)."""
        return self._get(0, min(n, self.size)) if self.size else b""

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end): small ranges through the block cache, large ones fetched exactly."""
        end = min(end, self.size)
        if end <= start:
            return b""
        if end - start >= CACHE_BLOCK:
            return self._get(start, end)
        out = bytearray()
        for b in range(start // CACHE_BLOCK, (end - 1) // CACHE_BLOCK + 1):
            if b not in self._blocks:
                self._blocks[b] = self._get(b * CACHE_BLOCK, min((b + 1) * CACHE_BLOCK, self.size))
                if len(self._blocks) > CACHE_BLOCKS:
                    self._blocks.popitem(last=False)
            self._blocks.move_to_end(b)
            out += self._blocks[b]
        lo = start - (start // CACHE_BLOCK) * CACHE_BLOCK
        return bytes(out[lo : lo + end - start])

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Many exact ranges, ``PARALLEL`` requests in flight, results in the given order."""
        if len(ranges) < 2:
            return [self._get(a, b) for a, b in ranges]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL)
        return list(self._pool.map(lambda r: self._get(*r), ranges))

    # io.RawIOBase
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read_range(self._pos, self._pos + len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        super().close()


def check_s3_buckets(paths: list[str]) -> None:
    """One quick request per s3:// bucket among ``paths`` (no retries, short timeouts): an unreachable
    endpoint, a missing bucket or refused credentials become one InputError instead of minutes of retries."""
    buckets = {p[len("s3://"):].split("/", 1)[0]: p for p in paths if p.startswith("s3://")}
    if not buckets:
        return
    import boto3
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options
    from botocore.config import Config

    from .errors import InputError

    o = (FileSystems._pipeline_options or PipelineOptions([])).view_as(S3Options)  # noqa: SLF001
    client = boto3.session.Session().client(
        "s3", region_name=o.s3_region_name, endpoint_url=o.s3_endpoint_url, use_ssl=not o.s3_disable_ssl,
        verify=o.s3_verify, aws_access_key_id=o.s3_access_key_id, aws_secret_access_key=o.s3_secret_access_key,
        aws_session_token=o.s3_session_token,
        config=Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 1}))
    where = o.s3_endpoint_url or "AWS"
    for bucket, path in sorted(buckets.items()):
        try:
            client.head_bucket(Bucket=bucket)
        except client.exceptions.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise InputError(f"{path}: no bucket {bucket!r} at {where}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise InputError(f"{path}: access to bucket {bucket!r} at {where} denied ({code}): check the "
                                 "credentials (--s3_access_key_id/--s3_secret_access_key or boto3's environment)") from None
            raise InputError(f"{path}: bucket {bucket!r} at {where}: {e}") from None
        except Exception as e:  # noqa: BLE001 - botocore's connection and credential errors
            raise InputError(f"{path}: cannot reach S3 at {where} ({type(e).__name__}: {e}); check "
                             "--s3_endpoint_url, --s3_region_name and the network") from None
