"""Compiled programs kept by what they compute, so a later process skips tracing and lowering.

JAX's persistent compilation cache names a program by the hash of its lowered module, so every
process still traces and lowers each program before it can look it up: on a CPU about 60 ms for
an eNTK program, most of a warm sweep cell (benchmarks/sweeps-cpu-2core.md). This store names
the compiled executable by everything the program is made from instead — ntksim's own source,
the versions of JAX, jaxlib and flax, JAX's configuration and trace context, XLA_FLAGS, the
devices, the function, its static arguments and the shapes and dtypes of the others — and keeps
it (jax.experimental.serialize_executable) beside JAX's cache, in `<JAX cache dir>/ntksim-programs`.
A program loaded from it is the executable the compilation made, so its numbers are the same bit
for bit. It is used only while JAX's persistent cache is on (`--no-compile-cache` turns both off)
and only for static arguments whose description is complete: a user's own Python function as
the activation has no stable name, so its programs are always traced.

Safe with several processes: an entry (its sha256, then the pickled serialized executable) is
written by a background thread to a temporary file and renamed into place, a reader that cannot
load one or finds its checksum wrong compiles instead (and replaces it), and two writers of one
name write equal executables. Python waits for the pending writes at exit; `flush()` waits now.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import platform
import re
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import jax
import numpy as np

STORE_DIRNAME = "ntksim-programs"
LOAD_EVENT = "/ntksim/program_store/load_duration"  # seconds spent loading an entry
HIT_EVENT = "/ntksim/program_store/hits"
# configuration that names files or steers logging, never the program (the cache directory
# itself among them: a run may move its cache)
_IGNORED_CONFIG = ("_cache", "_log", "traceback", "explain")

_DIGEST_BYTES = 32  # an entry is sha256(payload) + payload, the pickled serialized executable
_loaded: dict[str, Callable[..., Any]] = {}  # this process's programs, by name


def _source_digest() -> str:
    """sha256 of every ntksim source file, read once when ntksim is imported: the code this
    process runs (an edit during a long run must not name old programs after new code)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


SOURCE_DIGEST = _source_digest()
_AXIS_ENV = re.compile(r"<jax\._src\.core\.AxisEnv object at 0x[0-9a-f]+>")
_VARIABLE_PREFIXES = ("JAX_", "XLA_", "FLAX_", "TF_")  # environment variables read by JAX, XLA or flax
# plain jit behaves differently under these, or checks things while it traces
_DEBUG_MODES = ("jax_disable_jit", "jax_debug_nans", "jax_debug_infs", "jax_debug_key_reuse",
                "jax_enable_checks", "jax_check_tracer_leaks")  # fmt: skip


@cache
def _host(devices: tuple[Any, ...]) -> str | None:
    """What the devices' compiled code is specific to: XLA's topology fingerprint (the CPU's
    features, for a CPU) where this JAX has it, and the CPU's model and flags on Linux; None when
    neither can be had (then nothing is stored: a program from another node's CPU could crash or
    round differently)."""
    parts = [platform.machine()]
    with contextlib.suppress(Exception):
        from jax._src.lib import xla_client

        parts.append(str(xla_client.get_topology_for_devices(list(devices)).fingerprint()))
    cpuinfo = Path("/proc/cpuinfo")
    if devices[0].platform == "cpu" and cpuinfo.is_file():
        with contextlib.suppress(OSError):
            lines = cpuinfo.read_text(errors="replace").splitlines()
            parts += sorted({line for line in lines if line.startswith(("model name", "flags"))})
    return "\n".join(parts) if len(parts) > 1 else None


def _environment() -> list[str] | None:
    """Everything outside the call that shapes a compiled program, or None where a program must
    not come from the store (a debugging mode, several devices, an unknown host, a trace context
    that cannot be written down)."""
    import flax
    import jaxlib
    from jax._src import config as jax_config

    if any(jax.config.values.get(mode) for mode in _DEBUG_MODES):
        return None
    devices = tuple(jax.local_devices())
    host = _host(devices)
    context = _AXIS_ENV.sub("<AxisEnv>", repr(jax_config.trace_context()))
    if len(devices) != 1 or host is None or " at 0x" in context:
        return None
    settings = sorted(
        (name, repr(value))
        for name, value in jax.config.values.items()
        if not any(word in name for word in _IGNORED_CONFIG)
    )
    flax_settings = sorted((name, repr(value)) for name, value in getattr(flax.config, "_values", {}).items())
    variables = sorted(
        (name, value)
        for name, value in os.environ.items()
        if name.startswith(_VARIABLE_PREFIXES) and not any(w in name.lower() for w in _IGNORED_CONFIG)
    )
    return [
        SOURCE_DIGEST,
        jax.__version__,
        jaxlib.__version__,
        flax.__version__,
        np.__version__,
        platform.python_version(),
        sys.platform,
        repr(variables),
        repr(settings),
        repr(flax_settings),
        context,
        repr([(d.platform, d.device_kind, d.id) for d in devices]),
        devices[0].client.platform_version,
        host,
    ]


def _is_ntksim_function(function: Any) -> bool:
    """A module-level function of ntksim: its code is in the source digest and it has no state
    (not a closure, a lambda or a callable object such as the wrapper of a user's φ)."""
    return (
        isinstance(function, types.FunctionType)
        and function.__module__.startswith("ntksim.")
        and "<" not in function.__qualname__
        and function.__closure__ is None
    )


def describe_static(value: Any) -> str | None:
    """A complete, process-independent description of a static argument, or None when there is
    none (a user's function, an object whose repr is its address)."""
    from ntksim.activations import Activation, Elementwise
    from ntksim.nets.model import MLP

    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, tuple):
        parts = [describe_static(v) for v in value]
        known = [p for p in parts if p is not None]
        return None if len(known) < len(parts) else f"({', '.join(known)})"
    if type(value) is Activation:  # a subclass may compute differently
        return f"Activation({value.a!r}, {value.b!r})"
    if type(value) is Elementwise:
        functions = [f for f in (value.fn, value.dfn) if f is not None]
        if not all(_is_ntksim_function(f) for f in functions):
            return None  # a user's φ (wrapped or not): its code is not in ntksim's digest
        names = [f"{f.__module__}.{f.__qualname__}" for f in functions]
        return f"Elementwise({names}, {value.param_items!r}, {value.kinks!r})"
    if type(value) is MLP:
        activation = describe_static(value.activation)
        if activation is None:
            return None
        fields = (value.depth, value.width, value.out_dim, value.schedule, value.sigma_w, value.sigma_b)
        return f"MLP({activation}, {fields!r}, {np.dtype(value.compute_dtype).name})"
    return None


def _describe_array(leaf: Any) -> tuple:
    """Shape, dtype and weak type of an array argument (a Python number: its type, weakly typed)."""
    if isinstance(leaf, bool | int | float | complex):
        return (type(leaf).__name__, "weak")
    return (tuple(leaf.shape), str(leaf.dtype), bool(getattr(leaf, "weak_type", False)))


def program_name(function: Callable[..., Any], static: Sequence[Any], args: Sequence[Any]) -> str | None:
    """The store's name for `function` called with these static arguments and array arguments
    (pytrees of arrays and Python numbers), or None when a static argument cannot be described."""
    described = [describe_static(value) for value in static]
    if None in described:
        return None
    leaves, tree = jax.tree.flatten(tuple(args))
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return None  # called under jit, vmap or grad: the enclosing trace compiles it
    environment = _environment()
    if environment is None:
        return None
    arrays = repr([_describe_array(leaf) for leaf in leaves])
    where = f"{function.__module__}.{function.__qualname__}"
    parts = [*environment, where, repr(described), repr(tree), arrays]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def store_directory() -> Path | None:
    """`<JAX persistent cache>/ntksim-programs`, or None while JAX's persistent cache is off."""
    cache_dir = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    return Path(cache_dir) / STORE_DIRNAME if cache_dir else None


def compiled(
    function: Callable[..., Any], static: Sequence[Any], args: Sequence[Any], lower: Callable[[], Any]
) -> Callable[..., Any] | None:
    """The compiled program of `function` with these static arguments for arguments like `args`
    — from this process, from the store, or `lower().compile()` now and stored — to be called
    with `args`; None where the store does not apply (off, or an indescribable static argument):
    call the jitted function as usual."""
    directory = store_directory()
    if directory is None:
        return None
    name = program_name(function, static, args)
    if name is None:
        return None
    if name in _loaded:
        return _loaded[name]
    from jax.experimental.serialize_executable import deserialize_and_load, serialize

    path = directory / f"{name}.bin"
    program = None
    if path.is_file():
        started = time.perf_counter()
        try:
            data = path.read_bytes()
            payload = data[_DIGEST_BYTES:]
            if hashlib.sha256(payload).digest() != data[:_DIGEST_BYTES]:
                raise ValueError("damaged entry")  # checked before anything is unpickled
            program = deserialize_and_load(*pickle.loads(payload))
        except Exception as err:  # torn, damaged or from an incompatible build: compile it again
            _warn_once(f"could not load {path.name[:12]}… ({type(err).__name__}: {err}); compiling it")
            program = None
        else:
            jax.monitoring.record_event_duration_secs(LOAD_EVENT, time.perf_counter() - started)
            jax.monitoring.record_event(HIT_EVENT)
    if program is None:
        program = lower().compile()
        # serializing takes ~15 ms on a CPU: done beside the next cells' work, and awaited at exit
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down: not kept
            _writer().submit(_keep, path, program, serialize)
    _loaded[name] = program
    return program


@cache
def _writer() -> ThreadPoolExecutor:
    """One background thread for the store's writes (Python waits for its queue at exit)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ntksim-program-store")


def flush() -> None:
    """Wait until every program compiled so far is written to the store."""
    _writer().submit(lambda: None).result()


def _keep(path: Path, program: Any, serialize: Callable[[Any], Any]) -> None:
    try:
        payload = pickle.dumps(serialize(program))
        _write(path, hashlib.sha256(payload).digest() + payload)
    except Exception as err:  # unwritable or unserializable: just not kept, said once
        _warn_once(f"could not keep a program in {path.parent} ({type(err).__name__}: {err})")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """One stderr line per process for the store's first failure of each kind (the run goes on)."""
    kind = message.split(" (")[0].split("…")[0][:20]
    if kind not in _warned:
        _warned.add(kind)
        print(f"ntksim: warning: program store: {message}", file=sys.stderr)


def _after_fork_in_child() -> None:
    """A forked child has the executor but not its thread: start afresh."""
    _writer.cache_clear()
    _loaded.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _write(path: Path, payload: bytes) -> None:
    """Write `path` whole or not at all: a temporary file in the same directory, renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
