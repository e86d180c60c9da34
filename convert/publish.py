"""The output directory: temp dir beside OUT, small text files in it, atomic publication, stale cleanup.

Local paths use the OS (rename is atomic); URLs (gs://, s3://, ...) go through Beam's FileSystems, where
"publishing" moves the files and writes ``metadata.json`` last, which is what makes a dataset complete.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid

from shardkit.spec import METADATA_FILE, Metadata

from .encoders import InputError

TMP_MARK = ".shardkit-tmp-"


class PublishError(RuntimeError):
    """The output could not be written or moved into place."""


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _fs():  # type: ignore[no-untyped-def]
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def join(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + rel


def _split(out: str) -> tuple[str, str]:
    if is_remote(out):
        parent, _, name = out.rstrip("/").rpartition("/")
        return parent, name
    return os.path.split(os.path.abspath(out).rstrip("/"))


def tmp_dir_for(out: str) -> str:
    """A hidden sibling of OUT, named so that it is never mistaken for a dataset and can be traced to its run."""
    parent, name = _split(out)
    return join(parent, f".{name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def check_out(out: str, overwrite: bool) -> None:
    """Refuse an existing OUT unless --overwrite (and then only a shardkit dataset), or an unwritable parent."""
    if is_remote(out):
        if _fs().exists(join(out, METADATA_FILE)) and not overwrite:
            raise InputError(f"{out}: already exists; pass --overwrite to replace it")
        return
    if os.path.exists(out):
        if not overwrite:
            raise InputError(f"{out}: already exists; pass --overwrite to replace it")
        if not os.path.isdir(out) or (os.listdir(out) and not os.path.exists(os.path.join(out, METADATA_FILE))):
            raise InputError(f"{out}: exists and is not a shardkit dataset; refusing to replace it")
    parent = os.path.dirname(os.path.abspath(out).rstrip("/"))
    if not os.path.isdir(parent):
        raise InputError(f"{out}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: cannot write into {parent}: permission denied")


def make_dir(path: str, out: str) -> None:
    """Create the temp dir ``path`` for dataset ``out`` (object stores need none)."""
    if not is_remote(path):
        try:
            os.makedirs(path)
        except OSError as e:
            raise PublishError(f"cannot write {out}: cannot create {path}: {e.strerror or e}") from e


def write_text(path: str, text: str) -> None:
    """Write a small text file atomically (local) or as one object (remote)."""
    write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes) -> None:
    """Write a file atomically (local) or as one object (remote)."""
    if is_remote(path):
        with _fs().create(path) as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def read_bytes(path: str) -> bytes:
    """A file's bytes (local or remote)."""
    if is_remote(path):
        with _fs().open(path) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str | None:
    """A small file's text, or None if it does not exist."""
    try:
        if is_remote(path):
            with _fs().open(path) as f:
                return f.read().decode()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - remote filesystems raise their own not-found types
        if is_remote(path) and not _fs().exists(path):
            return None
        raise


def list_files(directory: str, suffix: str) -> list[str]:
    """Paths of the files directly in ``directory`` ending with ``suffix``, sorted."""
    if is_remote(directory):
        try:
            found = _fs().match([join(directory, "*" + suffix)])[0].metadata_list
        except Exception:  # noqa: BLE001 - no match is an error on some filesystems
            return []
        return sorted(m.path for m in found)
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(suffix))


def remove(path: str) -> None:
    """Delete a directory tree (local) or every object under a prefix (remote); errors are ignored."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        fs = _fs()
        found = fs.match([join(path, "**")])[0].metadata_list
        if found:
            fs.delete([m.path for m in found])
    except Exception:  # noqa: BLE001
        pass


def publish(tmp: str, out: str, metadata: Metadata, overwrite: bool, skip: tuple[str, ...]) -> None:
    """Write metadata.json into ``tmp`` and move it to ``out`` (an existing dataset is replaced only with
    ``overwrite``). Local: one atomic rename. Remote: shards are moved, then metadata.json is written last."""
    text = metadata.to_json() + "\n"
    for name in skip:
        remove(join(tmp, name))
    if not is_remote(out):
        try:
            write_text(join(tmp, METADATA_FILE), text)
            trash = None
            if os.path.exists(out) and overwrite:
                trash = tmp + "-old"
                os.rename(out, trash)
            os.rename(tmp, out)
        except OSError as e:
            raise PublishError(f"cannot write {out}: {e.strerror or e}") from e
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
        return
    fs = _fs()
    if overwrite:
        old = join(out, METADATA_FILE)
        if fs.exists(old):
            fs.delete([old])
        remove(out)
    files = [m.path for m in fs.match([join(tmp, "**")])[0].metadata_list]
    fs.rename(files, [join(out, f[len(tmp.rstrip("/")) + 1 :]) for f in files])
    write_text(join(out, METADATA_FILE), text)
    remove(tmp)


def clean_stale(out: str) -> None:
    """Remove temp dirs of killed runs for the same local OUT (their owner pid is gone)."""
    if is_remote(out):
        return
    parent, name = _split(out)
    if not os.path.isdir(parent):
        return
    pat = re.compile(rf"^\.{re.escape(name)}{re.escape(TMP_MARK)}(\d+)-[0-9a-f]+(-old)?$")
    for entry in os.listdir(parent):
        m = pat.match(entry)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
