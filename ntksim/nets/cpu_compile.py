"""Fast compilation of the eNTK programs on a CPU, where a sweep cell compiles longer than it computes.

A sweep compiles one eNTK program per depth and width and runs it for a handful of seeds, so on a
CPU most of its time is XLA compiling (benchmarks/sweeps-cpu-2core.md). Two of XLA's options
about halve XLA's part: fused loops emitted by XLA's elemental IR emitters instead of its MLIR
fusion emitters, and LLVM at -O1 instead of -O2. Measured on the 2-core CPU of the benchmarks,
configs/paper_cpu.yaml's 24 eNTK programs compiled one after another: XLA 15.4 s → 8.2 s, their
compute 10.0 s → 10.5 s; in a whole run, all compilation (tracing, lowering, the other programs)
20.9 s → 12.5 s and the wall time 34–36 s → 26–28 s.

They change the machine code, and with it, in places, the last bits: the emitters evaluate some
transcendental functions differently (GELU's kernels move by ~1e-7 relative in float32), and
-O1 vectorizes some loops differently (a vmapped tanh network, the Jacobian method, the family
with biases in float64). The piecewise-linear family without biases in float32 with the
structured (or NNGP) method, seeds one after another on one CPU device — quick.yaml's and
paper_cpu.yaml's cells — comes out bit-identical
(tests/nets/test_cpu_compile.py; and every row of both configs' results compared whole,
benchmarks/sweeps-cpu-2core.md). So this is opt-in (`ntk.fast_compile`), like `ntk.traced`: the
default keeps earlier runs' numbers bit for bit. Accelerators always get XLA's defaults (their
compilation is not the bottleneck, and -O1 would reach their kernels), and so does a jaxlib that
does not know the options (with a warning).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CPU_OPTIONS: dict[str, Any] = {
    "xla_cpu_use_fusion_emitters": False,
    "xla_backend_optimization_level": 1,
}


@cache
def cpu_options() -> dict[str, Any]:
    """CPU_OPTIONS where this jaxlib's XLA accepts them (checked once on a one-op program), else {}."""
    lowered = jax.jit(jnp.negative, compiler_options=CPU_OPTIONS).lower(np.float32(0))
    try:
        lowered.compile()
    except Exception as err:  # an option this XLA does not have ("No such compile option")
        warnings.warn(f"ntk.fast_compile: this jaxlib's XLA refuses {CPU_OPTIONS} ({err}); "
                      "compiling with its defaults", stacklevel=1)  # fmt: skip
        return {}
    return dict(CPU_OPTIONS)


class FastCompiled:
    """`jax.jit(fun, **jit_kwargs)` (`default`), and the same compiled with `cpu_options()`
    (`fast`). Called, lowered or asked anything else, it is `default`."""

    def __init__(self, fun: Callable[..., Any], **jit_kwargs: Any) -> None:
        self._fun, self._jit_kwargs = fun, jit_kwargs
        self.default = jax.jit(fun, **jit_kwargs)
        functools.update_wrapper(self, fun)

    @functools.cached_property
    def fast(self) -> Any:
        options = cpu_options()
        return jax.jit(self._fun, compiler_options=options, **self._jit_kwargs) if options else self.default

    def choose(self, fast_compile: bool) -> Any:
        """`fast` when asked for and JAX's default backend is a CPU, else `default`."""
        return self.fast if fast_compile and jax.default_backend() == "cpu" else self.default

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.default(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self.default.lower(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # e.g. jit's _cache_size, eval_shape, trace
        if name.startswith("__") or name in ("_fun", "_jit_kwargs", "default"):
            raise AttributeError(name)
        return getattr(self.default, name)


def fast_compiled(*, static_argnames: tuple[str, ...]) -> Callable[[Callable[..., Any]], FastCompiled]:
    """Decorator form of `FastCompiled`."""
    return lambda fun: FastCompiled(fun, static_argnames=static_argnames)
