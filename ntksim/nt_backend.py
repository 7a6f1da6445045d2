"""neural-tangents' infinite-width NTK for an ntksim MLP.

The only module that imports neural_tangents (and so tensorflow); import it lazily.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from jax import Array

from ntksim.model import MLP


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: tensorflow's C++ start-up lines (oneDNN, CUDA stubs)
    are written before its log level applies. Python exceptions still surface after restoring."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with _quiet_native_stderr():
    import neural_tangents as nt
    from neural_tangents import stax


def stax_network(net: MLP) -> tuple[Any, Any, Any]:
    """(init_fn, apply_fn, kernel_fn) of the equivalent `stax.serial` network.

    Dense layers use NTK parameterization (stax's default), ABRelu(a − b, a + b) is φ, and
    b_std=None (no bias) when σ_b = 0.
    """
    sigma_w, sigma_b = net.sigmas
    b_std = sigma_b if sigma_b != 0.0 else None
    left, right = net.activation.slopes
    layers = []
    for width in net.hidden:
        layers += [stax.Dense(width, W_std=sigma_w, b_std=b_std), stax.ABRelu(left, right)]
    layers.append(stax.Dense(net.out_dim, W_std=sigma_w, b_std=b_std))
    return stax.serial(*layers)


def nt_theta(net: MLP, x: Array) -> Array:
    """Θ^l(x_i, x_j) from neural-tangents' analytic kernel_fn; x: (n, m_0) → (n, n)."""
    _, _, kernel_fn = stax_network(net)
    return kernel_fn(x, x, "ntk")


def nt_empirical_fn(net: MLP, implementation: str) -> Any:
    """neural-tangents' empirical NTK function of the stax network (for benchmarks)."""
    _, apply_fn, _ = stax_network(net)
    impl = nt.NtkImplementation[implementation]
    return nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl)
