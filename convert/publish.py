"""The output directory: temp dir beside OUT, small text files in it, atomic publication, stale cleanup.

Local paths use the OS (rename is atomic); URLs (gs://, s3://, ...) go through Beam's FileSystems, where
"publishing" moves the files and writes ``metadata.json`` last, which is what makes a dataset complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid

from shardkit.spec import METADATA_FILE, Metadata, is_remote

from .errors import InputError, PublishError

TMP_MARK = ".shardkit-tmp-"
LEASE_SECONDS = 24 * 3600  # a temp dir nothing was written to for this long is abandoned, whatever its host
SHOWN = 5  # foreign entries named in the --overwrite refusal
# What an interrupted publication to an object store leaves under OUT (shards without metadata.json).
SHARD_OBJECT = re.compile(r"^(train|validation|test)/(train|validation|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?$")


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


def host_name() -> str:
    """This machine's name as used in temp dir names (characters outside [A-Za-z0-9._] become '_')."""
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "localhost"


def tmp_dir_for(out: str) -> str:
    """A hidden sibling of OUT, named so that it is never mistaken for a dataset and can be traced to its run:
    ``.<name>.shardkit-tmp-<host>-<pid>-<random>`` (host and pid say who may clean it up)."""
    parent, name = _split(out)
    return join(parent, f".{name}{TMP_MARK}{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def dataset_entries(out: str) -> tuple[set[str], list[str]]:
    """(what belongs to the dataset at ``out``, everything under ``out``), as paths relative to ``out``;
    directories end with '/'. The dataset is metadata.json, the shards it lists and their split folders."""
    text = read_text(join(out, METADATA_FILE))
    ours = {METADATA_FILE}
    try:
        splits = json.loads(text)["splits"].values() if text is not None else ()
        shards = [str(sh["path"]) for split in splits for sh in split["shards"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        shards = []
    for path in shards:
        ours.add(path)
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            ours.add(path + "/")
    if is_remote(out):
        try:
            found = _fs().match([join(out, "**")])[0].metadata_list
        except Exception:  # noqa: BLE001 - no match is an error on some filesystems
            found = []
        return ours, sorted(m.path[len(out.rstrip("/")) + 1 :] for m in found)
    everything = []
    for root, dirs, files in os.walk(out):
        rel = os.path.relpath(root, out)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        everything += [prefix + d + "/" for d in dirs] + [prefix + f for f in files]
    return ours, sorted(everything)


def foreign_entries(out: str) -> list[str]:
    """Files and folders under ``out`` that are not part of its dataset (a foreign folder, not its contents)."""
    ours, everything = dataset_entries(out)
    foreign: list[str] = []
    for entry in everything:
        if entry not in ours and not any(entry.startswith(f) for f in foreign if f.endswith("/")):
            foreign.append(entry)
    return foreign


def check_foreign(out: str) -> None:
    """InputError naming what --overwrite would delete beyond the dataset at ``out``, if anything."""
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        it, are = ("them", "are") if len(foreign) > 1 else ("it", "is")
        raise InputError(f"{out}: holds {shown}, which {are} not part of the dataset; --overwrite replaces only "
                         f"a dataset: move {it} out of {out} or choose another --out")


def check_out(out: str, overwrite: bool) -> None:
    """Refuse an existing OUT that is not a shardkit dataset (an empty folder aside) whatever the flags, an
    existing dataset unless --overwrite, and then one holding anything else; refuse an unwritable parent."""
    if is_remote(out):
        if _fs().exists(join(out, METADATA_FILE)):
            if not overwrite:
                raise InputError(f"{out}: already exists; pass --overwrite to replace it")
            check_foreign(out)
            return
        foreign = [e for e in dataset_entries(out)[1] if not SHARD_OBJECT.match(e)]
        if foreign:
            raise InputError(f"{out}: holds {foreign[0]} but no {METADATA_FILE}, so it is not a shardkit dataset; "
                             "refusing to write into it: choose another --out")
        return
    if os.path.exists(out):
        if not os.path.isdir(out) or (os.listdir(out) and not os.path.exists(os.path.join(out, METADATA_FILE))):
            raise InputError(f"{out}: exists and is not a shardkit dataset; refusing to replace it: "
                             "choose another --out")
        if not overwrite:
            raise InputError(f"{out}: already exists; pass --overwrite to replace it")
        check_foreign(out)
    parent = os.path.dirname(os.path.abspath(out).rstrip("/"))
    if not os.path.isdir(parent):
        raise InputError(f"{out}: parent directory {parent} does not exist; create it (mkdir -p {parent}) "
                         "or choose another --out")
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
    if not is_remote(out):
        for name in skip:
            remove(join(tmp, name))
        try:
            write_text(join(tmp, METADATA_FILE), text)
            trash = None
            if os.path.exists(out) and overwrite:
                _recheck_foreign(out)
                trash = tmp + "-old"
                os.rename(out, trash)
            os.rename(tmp, out)
        except OSError as e:
            raise PublishError(f"cannot write {out}: {e.strerror or e}") from e
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
        return
    fs = _fs()
    old = join(out, METADATA_FILE)
    if fs.exists(old):  # only with overwrite: check_out refused it otherwise
        _recheck_foreign(out)
        fs.delete([old])  # from here on, OUT is no dataset until the new metadata.json is written
    else:
        foreign = [e for e in dataset_entries(out)[1] if not SHARD_OBJECT.match(e)]
        if foreign:
            raise PublishError(f"{out}: {foreign[0]} appeared there during the conversion; nothing was replaced: "
                               "move it or choose another --out")
    remove(out)  # the old dataset's shards, or shards an interrupted publication left
    found = [m.path for m in fs.match([join(tmp, "**")])[0].metadata_list]
    files = [f for f in found if f[len(tmp.rstrip("/")) + 1 :].split("/", 1)[0] not in skip]
    fs.rename(files, [join(out, f[len(tmp.rstrip("/")) + 1 :]) for f in files])
    write_text(join(out, METADATA_FILE), text)
    fs.delete([f for f in found if f not in set(files)])  # what is left of the temporary prefix


def _recheck_foreign(out: str) -> None:
    """Right before replacing ``out``: files that appeared in it during the conversion stop the publication."""
    try:
        check_foreign(out)
    except InputError as e:
        raise PublishError(str(e)) from None


def _last_write(path: str) -> float:
    """The newest modification time in a directory tree."""
    newest = os.path.getmtime(path)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            try:
                newest = max(newest, os.path.getmtime(os.path.join(root, n)))
            except OSError:
                pass
    return newest


def _clean_stale_prefixes(parent: str, name: str) -> list[str]:
    """``clean_stale`` on an object store: temp prefixes are grouped from one listing, their last write is
    their newest object's time."""
    try:
        found = _fs().match([join(parent, f".{name}{TMP_MARK}**")])[0].metadata_list
    except Exception:  # noqa: BLE001 - no match is an error on some filesystems
        return []
    newest: dict[str, float] = {}
    for m in found:
        entry = m.path[len(parent.rstrip("/")) + 1 :].split("/", 1)[0]
        newest[entry] = max(newest.get(entry, 0.0), float(m.last_updated_in_seconds or 0))
    removed = []
    for entry, last in sorted(newest.items()):
        if is_stale(entry, name, join(parent, entry), last_write=last):
            remove(join(parent, entry))
            removed.append(join(parent, entry))
    return removed


def is_stale(entry: str, name: str, path: str, now: float | None = None, last_write: float | None = None) -> bool:
    """Whether temp dir ``entry`` (beside dataset ``name``, at ``path``) belongs to a conversion that is over.

    Its pid is checked only when it names this host: on shared storage the same pid on another machine
    is another process. Any temp dir (of any host, or named before hosts were recorded) with no write for
    LEASE_SECONDS is abandoned.
    """
    m = re.match(rf"^\.{re.escape(name)}{re.escape(TMP_MARK)}(?:(?P<host>.+)-)?(?P<pid>\d+)-[0-9a-f]{{8}}(?:-old)?$",
                 entry)
    if not m:
        return False
    if m.group("host") == host_name() and not _alive(int(m.group("pid"))):
        return True
    try:
        last = _last_write(path) if last_write is None else last_write
        return (time.time() if now is None else now) - last > LEASE_SECONDS
    except OSError:
        return False


def clean_stale(out: str) -> list[str]:
    """Remove the temp dirs of conversions for the same OUT that are over (see ``is_stale``);
    returns the removed paths."""
    parent, name = _split(out)
    if is_remote(out):
        return _clean_stale_prefixes(parent, name)
    if not os.path.isdir(parent):
        return []
    removed = []
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if entry.startswith(f".{name}{TMP_MARK}") and is_stale(entry, name, path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
