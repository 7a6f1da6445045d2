"""Files that are never half-written: every output (shards, tables, figures) is written to a
temp name of its own (host, pid, thread), synced, and renamed into place."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


def temp_name(path: Path, suffix: str = "tmp") -> Path:
    """A name beside `path` that no other process or thread uses: host, pid and thread id."""
    host, pid, tid = socket.gethostname(), os.getpid(), threading.get_ident()
    return path.with_name(f".{path.name}.{host}.{pid}.{tid}.{suffix}")


def write_synced(path: Path, data: str | bytes) -> None:
    with open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a synced temp file and rename, so the name only ever points at complete data,
    also after a power loss or with several writers at once."""
    tmp = temp_name(path)
    write_synced(tmp, data)
    os.replace(tmp, path)
    sync_dir(path.parent)
