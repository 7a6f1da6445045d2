"""What a submission through submitit needs around it: holding back what sbatch says on stderr,
sending local controllers' stderr to a log, stopping local tasks on Ctrl-C, and removing what a
rejected submission wrote."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ntksim.engine.store import RunStore


class Kept:
    """What a block wrote to file descriptor 2, readable after it ends."""

    def __init__(self) -> None:
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def stderr_kept(kept: Kept) -> Iterator[Kept]:
    """Hold back what subprocesses (sbatch) write to stderr during the block: fd 2 goes to a
    temporary file, restored on exit, and its text is kept for the caller's one-line message.
    Where there is no fd 2 to redirect (stderr closed), the block runs as it is."""
    if sys.stderr is None:
        yield kept
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield kept
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield kept
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept.text = sink.read().decode(errors="replace")


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """fd 2 appended to `path` during the block (processes started there keep writing to it)."""
    if sys.stderr is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def drop_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def stop_local_tasks(jobs: list[Any], grace_s: float = 10.0) -> None:
    """Ctrl-C in the driver of --executor local: pass the interrupt on to every task (each
    releases its claim and keeps its finished shards), then wait for them, and kill any that
    outlive the grace period, so no orphan keeps computing."""
    processes = [p for p in (getattr(job, "_process", None) for job in jobs) if p is not None]
    for job in jobs:
        with contextlib.suppress(Exception):
            job.cancel(check=False)
    deadline = time.monotonic() + grace_s
    try:
        for process in processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill what is left
        pass
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(Exception):
                process.kill()


# submitit's files in logs/: its pickles and sbatch script, named by a uuid
_SUBMITIT_FILE = re.compile(r"^(\.submission_file_[0-9a-f]{32}\.sh|[0-9a-f]{32}\.pkl)$")


def forget_submission(store: RunStore, before: set[Path], fresh: bool) -> None:
    """After a rejected submission: remove what it wrote — submitit's pickles and sbatch script in
    logs/, nothing else — and, if this command created the directory and nothing else has
    appeared in it meanwhile, the config and the empty scaffolding, so a re-run starts clean.
    Under the directory's lock: a run started beside it never loses a file."""
    with store.setup_lock():
        for path in set(store.logs.iterdir()) - before if store.logs.is_dir() else ():
            if path.is_file() and _SUBMITIT_FILE.match(path.name):
                path.unlink(missing_ok=True)
        scaffolding = store.scaffolding()
        untouched = not store.run_path.exists() and not any(
            any(d.iterdir()) for d in scaffolding if d.is_dir()
        )
        if fresh and untouched and not store.submitted_path.exists():
            store.config_path.unlink(missing_ok=True)
            for d in scaffolding:
                with contextlib.suppress(OSError):
                    d.rmdir()
            store.lock_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                store.root.rmdir()  # only if nothing else is there
