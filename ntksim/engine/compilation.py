"""Where a cell's time goes, and JAX's persistent compilation cache.

A sweep on a CPU spends most of its time compiling, not computing (benchmarks/sweeps-cpu-2core.md):
every new array shape is traced, lowered and compiled by XLA before its first call. Two things here:

- `CompileClock`: per cell, the seconds JAX spent tracing, lowering and compiling (or loading a
  compiled program from the persistent cache), read from JAX's own monitoring events; the rest of
  the cell's wall time is compute.
- `enable_persistent_cache(directory)`: JAX's persistent compilation cache in `directory`, every
  compilation written to it, so a second run, or every SLURM array task after the first, loads
  programs instead of compiling them. Several processes may share one directory: JAX names an
  entry by the hash of its program, a reader that meets an entry still being written sees a
  corrupt entry and compiles afresh (JAX warns and goes on), and two writers of one entry write
  the same bytes. Numbers never depend on whether a program came from the cache.
- beside it, ntksim's program store (`ntksim.nets.program_store`): the eNTK programs' executables
  named by what they are made from, which spares a later process the tracing and lowering JAX
  needs before it can even look a program up. On and off with the persistent cache.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import jax

from ntksim.nets import program_store

# JAX's monitoring events for the three stages of a compilation; the backend stage includes a
# persistent-cache lookup and load (jax/_src/dispatch.py, jax/_src/compiler.py).
# ntksim's program store (ntksim.nets.program_store) reports its loads as one more stage, and as hits.
COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
        program_store.LOAD_EVENT,
    }
)
CACHE_HIT_EVENTS = frozenset({"/jax/compilation_cache/cache_hits", program_store.HIT_EVENT})
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"
CACHE_DIRNAME = "jax-cache"  # the default cache directory, inside the run directory


@dataclass
class CellTime:
    """Seconds of one cell: `compile_s` tracing, lowering and compiling (or loading from the cache),
    `compute_s` the rest of its wall time; `cache_hits`/`cache_misses`: persistent-cache lookups."""

    compile_s: float = 0.0
    compute_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "compile_s": round(self.compile_s, 6),
            "compute_s": round(self.compute_s, 6),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }


class CompileClock:
    """Counts JAX's compilation seconds per thread while `measure()` blocks are open.

    One listener for the whole process (JAX keeps listeners forever); blocks on other threads do
    not see each other's compilations.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _installed: ClassVar[bool] = False
    _open: ClassVar[dict[int, CellTime]] = {}

    @classmethod
    def _install(cls) -> None:
        with cls._lock:
            if cls._installed:
                return
            jax.monitoring.register_event_duration_secs_listener(cls._on_duration)  # type: ignore[arg-type]
            jax.monitoring.register_event_listener(cls._on_event)
            cls._installed = True

    @classmethod
    def _on_duration(cls, event: str, duration: float, **kwargs: object) -> None:
        current = cls._open.get(threading.get_ident())
        if current is not None and event in COMPILE_EVENTS:
            current.compile_s += duration

    @classmethod
    def _on_event(cls, event: str, **kwargs: object) -> None:
        current = cls._open.get(threading.get_ident())
        if current is not None:
            if event in CACHE_HIT_EVENTS:
                current.cache_hits += 1
            elif event == CACHE_MISS_EVENT:
                current.cache_misses += 1

    @classmethod
    @contextlib.contextmanager
    def measure(cls) -> Iterator[CellTime]:
        """A CellTime filled in when the block ends: compile seconds, and wall minus those."""
        cls._install()
        ident = threading.get_ident()
        outer = cls._open.get(ident)
        clock = CellTime()
        cls._open[ident] = clock
        started = time.perf_counter()
        try:
            yield clock
        finally:
            clock.compute_s = max(0.0, time.perf_counter() - started - clock.compile_s)
            if outer is None:
                del cls._open[ident]
            else:  # nested: the outer block counts these seconds too
                cls._open[ident] = outer
                outer.compile_s += clock.compile_s
                outer.cache_hits += clock.cache_hits
                outer.cache_misses += clock.cache_misses


def enable_persistent_cache(directory: str | Path) -> Path:
    """Switch JAX's persistent compilation cache on, in `directory` (created), for every
    compilation however short or small; returns the directory. Call before the first compilation
    for it to take effect (JAX reads the setting when it first compiles)."""
    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    previous = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    jax.config.update("jax_compilation_cache_dir", str(path))
    if previous and previous != str(path):
        # JAX opens its cache once per process; a second run in the same process (a notebook,
        # the tests) must not keep writing into the first run's directory.
        with contextlib.suppress(ImportError, AttributeError):
            from jax._src import compilation_cache

            compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def disable_persistent_cache() -> None:
    """Switch JAX's persistent compilation cache off (`--no-compile-cache`)."""
    if jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]
        jax.config.update("jax_compilation_cache_dir", None)
        with contextlib.suppress(ImportError, AttributeError):
            from jax._src import compilation_cache

            compilation_cache.reset_cache()


def cache_size(directory: str | Path) -> tuple[int, int]:
    """(JAX's entries, bytes with ntksim's program store) of a persistent cache directory; (0, 0)
    where there is none."""
    entries, total = 0, 0
    path = Path(directory)
    if not path.is_dir():
        return 0, 0
    for item in [*path.iterdir(), *(path / program_store.STORE_DIRNAME).glob("*.bin")]:
        with contextlib.suppress(OSError):
            if item.is_file() and not item.name.startswith("."):
                entries += item.name.endswith("-cache")
                total += item.stat().st_size
    return entries, total


def describe_cache(directory: str | Path | None) -> str:
    """One line: where the cache is and how big, or that it is off."""
    if directory is None:
        return "compilation cache: off"
    program_store.flush()  # this process's programs still being written count too
    entries, total = cache_size(directory)
    return f"compilation cache: {directory} ({entries} programs, {total / 2**20:.1f} MiB)"
