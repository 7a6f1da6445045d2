"""Sweep engine: compute cells, write each as a shard the moment it finishes.

Knows no study: it is handed the cells and a function from a cell to its rows. A cell that
raises is recorded as failed with its reason, and the sweep goes on; Ctrl-C stops it with every
finished shard kept.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ntksim.engine.compilation import CompileClock
from ntksim.engine.store import RunStore
from ntksim.engine.study import CellLike as Cell

__all__ = ["Interrupts", "SweepReport", "run_cells"]


STUCK_GRACE_S = 2.0  # seconds after Ctrl-C that native code may keep the main thread before exit


class Interrupts:
    """Ctrl-C that cannot be lost, and that ends a run promptly even inside native code.

    Python raises KeyboardInterrupt in whatever Python code runs when SIGINT arrives; if that is
    a garbage-collector callback (JAX registers one), the exception is printed as "ignored" and
    the run would go on (seen under load: the sweep then finished with exit 0, or waited forever
    for a peer). The handler also records the request, and the sweep checks it between cells.

    Python runs that handler only between bytecodes of the main thread, so while XLA compiles
    (minutes for a network thousands of layers deep) or LAPACK factors, Ctrl-C would wait for
    it. XLA and numpy release the GIL there, so a watchdog thread, woken through the signal
    wakeup fd (written from C at once), sees the request; if the handler has not run within
    `grace_s`, it calls `on_stuck` (the sweep's: give back this process's claims, say so, exit
    130). Finished shards are safe: each is written atomically, before its claim is given back.
    """

    def __init__(self, on_stuck: Callable[[], None] | None = None, grace_s: float = STUCK_GRACE_S) -> None:
        self.requested = False
        self.handled = 0  # times the handler ran: the watchdog compares it with the signals seen
        self.on_stuck, self.grace_s = on_stuck, grace_s

    def _handler(self, signum: int, frame: object) -> None:
        self.requested = True
        self.handled += 1
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def _unraisable(self, previous: Callable[[Any], None]) -> Callable[[Any], None]:
        """An unraisable-exception hook that takes a swallowed KeyboardInterrupt as the request it
        is (instead of printing "Exception ignored in …" with a traceback) and passes the rest on."""

        def hook(unraisable: Any) -> None:
            if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
                self.requested = True
                return
            previous(unraisable)

        return hook

    def _watch(self, wakeup: socket.socket, closing: threading.Event) -> None:
        """The watchdog: each SIGINT byte starts the grace period; the handler's running ends it."""
        seen = 0  # SIGINTs the wakeup fd reported (a second Ctrl-C counts even after a first was handled)
        while not closing.is_set():
            try:
                got = wakeup.recv(64)
            except OSError:
                return
            if closing.is_set() or not got or signal.SIGINT not in got:
                continue
            seen += got.count(signal.SIGINT)
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline and self.handled < seen and not closing.is_set():
                time.sleep(0.05)
            if self.handled < seen and not closing.is_set() and self.on_stuck is not None:
                self.on_stuck()

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[None]:
        """The wakeup fd and its thread, for the duration (main thread only, like the handler)."""
        if self.on_stuck is None:
            yield
            return
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        try:
            previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread of the main interpreter
            reader.close()
            writer.close()
            yield
            return
        closing = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(reader, closing), daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            closing.set()
            signal.set_wakeup_fd(previous_fd)
            writer.close()
            watchdog.join(timeout=1.0)
            reader.close()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Install the handler for the duration: in the main thread, unless SIGINT is ignored (a
        process started in the background by a shell script, which must stay deaf to it)."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        ):
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable(previous_hook)
        try:
            with self._watchdog():
                yield self
        finally:
            sys.unraisablehook = previous_hook
            if previous is not None:  # None: a handler installed from C, which cannot be restored
                signal.signal(signal.SIGINT, previous)


@dataclass
class SweepReport:
    """What one process did: cells computed, failed, skipped (done before or claimed elsewhere)."""

    computed: list[Cell] = field(default_factory=list)
    failed: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)


class ProgressLines:
    """One line per computed cell on stderr — count, the cell, its seconds and an ETA — for logs,
    where a progress bar would be a wall of carriage returns.

    The ETA scales the seconds spent so far by the study's cost model (`estimates`: cell id →
    estimated seconds): time left = spent × (estimated seconds left / estimated seconds done), so
    a sweep whose first cells are its smallest does not promise to end in minutes. Without
    estimates, the mean cell so far times the cells left."""

    def __init__(self, total: int, estimates: dict[str, float] | None = None) -> None:
        self.total, self.count, self.failed, self.skipped, self.spent = total, 0, 0, 0, 0.0
        self.estimates = estimates or {}
        self.left_estimate = sum(self.estimates.values())
        self.done_estimate = 0.0

    def _settle(self, cell_id: str | None, computed: bool) -> None:
        estimate = self.estimates.get(cell_id, 0.0) if cell_id else 0.0
        self.left_estimate -= estimate
        if computed:
            self.done_estimate += estimate

    def skip(self, cell_id: str | None = None) -> None:
        """A cell found done (another process, an earlier run): counted, not printed."""
        self.count += 1
        self.skipped += 1
        self._settle(cell_id, False)

    def eta(self) -> float | None:
        """Seconds left, or None when nothing is known yet (or nothing is left)."""
        computed = self.count - self.failed - self.skipped
        left = self.total - self.count
        if not computed or not left:
            return None
        if self.estimates and self.done_estimate > 0:
            return self.spent * max(self.left_estimate, 0.0) / self.done_estimate
        return self.spent / computed * left

    def done(
        self,
        label: str,
        seconds: float,
        failed: bool = False,
        compile_s: float | None = None,
        cell_id: str | None = None,
    ) -> None:
        self.count += 1
        self.failed += failed
        if not failed:
            self.spent += seconds
        self._settle(cell_id, not failed)
        eta = self.eta()
        eta_text = f", ETA {eta:.0f} s" if eta is not None else ""
        state = "FAILED" if failed else f"{seconds:.1f} s"
        if not failed and compile_s is not None:
            # JAX's compile events also count programs compiled for state the next cells share
            # (a limit, a data set), outside this cell's wall time: a share of it, never more.
            state += f" ({min(compile_s, seconds):.1f} s compiling)"
        print(f"ntksim: [{self.count}/{self.total}] {label}: {state}{eta_text}", file=sys.stderr, flush=True)


def run_cells(
    cells: Iterable[Cell],
    compute: Callable[[Cell], list[dict[str, Any]]],
    store: RunStore,
    progress: bool | None = None,
    poll_s: float = 1.0,
    interruptions: tuple[type[BaseException], ...] = (),
    estimates: dict[str, float] | None = None,
) -> SweepReport:
    """Compute every cell that has no shard yet.

    Cells claimed by another live process are left to it; once the rest are done, this process
    waits for them and takes over any whose claim goes stale (its owner died), so it returns
    only when every cell is done or failed; then it removes the claims and temp files that dead
    processes left. progress: tqdm bar with ETA; None shows it only on
    an interactive terminal. KeyboardInterrupt propagates after releasing the current claim;
    shards already written stay. `interruptions`: exceptions that stop the sweep like Ctrl-C
    instead of failing the cell they interrupted (a scheduler's "time is up" raised from a
    signal handler in the middle of a cell says nothing about that cell). `estimates`: cell id
    → the study's estimated seconds, for the progress lines' ETA.
    """
    cells = list(cells)
    report = SweepReport()
    bar = tqdm(
        total=len(cells), unit="cell", disable=None if progress is None else not progress, smoothing=0.1
    )
    # A log file (cluster task, --executor local, output piped) gets no bar: a line per cell instead.
    lines = ProgressLines(len(cells), estimates) if progress is None and bar.disable else None

    def attempt(cell: Cell) -> bool:
        """Compute the cell unless another process holds it; True when it needs no more work."""
        if store.is_done(cell):
            report.skipped.append(cell)
            if lines:
                lines.skip(cell.cell_id)
            return True
        if not store.claim(cell):
            return False
        bar.set_postfix_str(cell.label(), refresh=False)
        try:
            if store.is_done(cell):  # finished by another process between check and claim
                report.skipped.append(cell)
                return True
            started = time.perf_counter()
            with CompileClock.measure() as clock:
                rows = compute(cell)
            store.write_timing(cell, clock.as_dict())
            store.write_shard(cell, rows)
            report.computed.append(cell)
            if lines:
                lines.done(cell.label(), time.perf_counter() - started, compile_s=clock.compile_s,
                           cell_id=cell.cell_id)  # fmt: skip
        except (KeyboardInterrupt, SystemExit, *interruptions):  # type: ignore[misc]  # a tuple of classes
            raise
        except Exception as err:  # recorded, and the sweep goes on
            message = str(err).splitlines()[0] if str(err) else ""
            store.write_failure(cell, f"{type(err).__name__}: {message}")
            report.failed.append(cell)
            if lines:
                lines.done(cell.label(), math.nan, failed=True, cell_id=cell.cell_id)
        finally:
            store.release(cell)
        return True

    def stuck() -> None:
        """Ctrl-C while native code holds the main thread: nothing of this process is half-written
        (shards are atomic), so give back its claims and leave at once."""
        store.release_held()
        print(
            "\nntksim: interrupted inside native code (XLA compiling, or a long array operation); "
            f"stopped without waiting for it. Finished cells are kept in {store.root}; run the same "
            "command again to resume",
            file=sys.stderr,
            flush=True,
        )
        os._exit(130)

    store.reap()
    try:
        _sweep(cells, attempt, store, bar, report, poll_s, stuck)
    except (KeyboardInterrupt, SystemExit, *interruptions):  # type: ignore[misc]  # a tuple of classes
        store.release_held()
        raise
    store.reap()  # claims of processes that died after writing their shard
    return report


def _sweep(cells: list[Cell], attempt: Callable[[Cell], bool], store: RunStore, bar: tqdm,
           report: SweepReport, poll_s: float, stuck: Callable[[], None]) -> None:  # fmt: skip
    """Attempt every cell, then wait for those other processes hold (taking over stale ones)."""
    with Interrupts(stuck, STUCK_GRACE_S).installed() as interrupts, bar:
        waiting = []
        for cell in cells:
            interrupts.check()
            if attempt(cell):
                bar.update(1)
            else:
                waiting.append(cell)
        while waiting:  # cells other processes are computing
            time.sleep(poll_s)
            interrupts.check()
            still = []
            for cell in waiting:
                if store.failure_path(cell).exists() and not store.claim_is_live(cell):
                    report.skipped.append(cell)  # another process recorded its failure
                    bar.update(1)
                elif attempt(cell):
                    bar.update(1)
                else:
                    still.append(cell)
            waiting = still
