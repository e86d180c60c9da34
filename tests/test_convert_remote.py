"""Non-local output through Beam's FileSystems (what gs:// uses), exercised with a filesystem registered here."""

from __future__ import annotations

import os

import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from conftest import IMAGE_ARGS, array_h5_with_bad_value, run_convert, shard_bytes
from shardkit.spec import read_metadata


class MountedFileSystem(LocalFileSystem):
    """``mounted://rel/path`` -> ``ROOT/rel/path``: a URL scheme that only FileSystems understands."""

    ROOT = ""

    @classmethod
    def scheme(cls) -> str:
        return "mounted"

    def _local(self, path: str) -> str:
        return os.path.join(self.ROOT, path[len("mounted://"):]) if path.startswith("mounted://") else path

    def _url(self, path: str) -> str:
        return "mounted://" + os.path.relpath(path, self.ROOT)

    def mkdirs(self, path):  # type: ignore[no-untyped-def]
        return super().mkdirs(self._local(path))

    def create(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        return super().open(self._local(path), *args, **kwargs)

    def rename(self, src, dst):  # type: ignore[no-untyped-def]
        for d in dst:
            os.makedirs(os.path.dirname(self._local(d)), exist_ok=True)
        return super().rename([self._local(p) for p in src], [self._local(p) for p in dst])

    def exists(self, path):  # type: ignore[no-untyped-def]
        return super().exists(self._local(path))

    def size(self, path):  # type: ignore[no-untyped-def]
        return super().size(self._local(path))

    def last_updated(self, path):  # type: ignore[no-untyped-def]
        return super().last_updated(self._local(path))

    def metadata(self, path):  # type: ignore[no-untyped-def]
        m = super().metadata(self._local(path))
        return FileMetadata(path, m.size_in_bytes, m.last_updated_in_seconds)

    def delete(self, paths):  # type: ignore[no-untyped-def]
        return super().delete([self._local(p) for p in paths])

    def _list(self, dir_or_prefix):  # type: ignore[no-untyped-def]
        for m in super()._list(self._local(dir_or_prefix)):
            yield FileMetadata(self._url(m.path), m.size_in_bytes, m.last_updated_in_seconds)


@pytest.fixture
def mounted(tmp_path):
    MountedFileSystem.ROOT = str(tmp_path / "bucket")
    os.makedirs(MountedFileSystem.ROOT)
    yield MountedFileSystem.ROOT


def test_remote_output_matches_local(knots_h5: str, mounted: str, tmp_path) -> None:
    local = str(tmp_path / "local")
    assert run_convert([knots_h5, "--out", local, *IMAGE_ARGS, "--num-shards", "2", "--workers", "1"])[0] == 0
    rc, err = run_convert([knots_h5, "--out", "mounted://data/ds", *IMAGE_ARGS, "--num-shards", "2",
                           "--workers", "1"])
    assert rc == 0, err
    published = os.path.join(mounted, "data", "ds")
    assert shard_bytes(published) == shard_bytes(local)
    assert read_metadata(published).splits == read_metadata(local).splits
    leftover = [f for d in os.listdir(os.path.join(mounted, "data")) if d != "ds"
                for _, _, fs in os.walk(os.path.join(mounted, "data", d)) for f in fs]
    assert leftover == []  # no object left under the temp prefix (empty local dirs are this fake's artefact)
    assert not [f for _, _, fs in os.walk(published) for f in fs if "inprogress" in f or f.endswith(".json.tmp")]
    rc, err = run_convert([knots_h5, "--out", "mounted://data/ds", *IMAGE_ARGS, "--workers", "1"])
    assert rc == 1 and "already exists" in err
    rc, err = run_convert([knots_h5, "--out", "mounted://data/ds", *IMAGE_ARGS, "--num-shards", "3", "--workers",
                           "1", "--overwrite"])
    assert rc == 0, err
    assert len(read_metadata(published).splits["train"].shards) == 3
    assert len(os.listdir(os.path.join(published, "train"))) == 3


def test_remote_output_bad_input_leaves_nothing(mounted: str, tmp_path) -> None:
    src = array_h5_with_bad_value(str(tmp_path / "n.h5"), rows=20, cols=3, bad_row=4, bad=float("nan"))
    rc, err = run_convert([src, "--out", "mounted://ds", "--kind", "array", "--data", "/x", "--label", "/y",
                           "--workers", "1"])
    assert rc == 1 and "row 4" in err
    assert [f for _, _, fs in os.walk(mounted) for f in fs] == []
