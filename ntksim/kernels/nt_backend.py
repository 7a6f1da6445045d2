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

from ntksim.nets.model import MLP


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


# Gauss–Hermite nodes per axis for activations neural-tangents has no closed form for.
NUMERICAL_DEG = 25


def stax_activation(activation: Any, deg: int = NUMERICAL_DEG) -> Any:
    """neural-tangents' layer for φ: its closed form where it has one (ABRelu for the family,
    Erf, Gelu, Sin, Monomial, RectifiedMonomial, Polynomial for polynomials and Hermite — whose
    own Hermite layer is normalised and assumes unit variance), else ElementwiseNumerical."""
    from ntksim.activations import Activation, presets

    if isinstance(activation, Activation):
        return stax.ABRelu(*activation.slopes)
    # By the preset's function, not its (user-settable) name.
    fn, params = activation.fn, activation.params
    if fn is presets._erf:
        return stax.Erf(a=1.0, b=1.0, c=0.0)
    if fn is presets._gelu:
        return stax.Gelu(approximate=False)
    if fn is presets._sin:
        return stax.Sin(a=1.0, b=1.0, c=0.0)
    if fn is presets._rectified_monomial:
        return stax.RectifiedMonomial(params["degree"])
    if fn is presets._polynomial:
        coefficients = dict(activation.param_items)["coefficients"]
        if "degree" in params and all(c == 0 for c in coefficients[:-1]) and coefficients[-1] == 1:
            return stax.Monomial(params["degree"])
        return stax.Polynomial(coefficients)
    return stax.ElementwiseNumerical(activation, deg, activation.derivative)


def stax_network(net: MLP, deg: int = NUMERICAL_DEG) -> tuple[Any, Any, Any]:
    """(init_fn, apply_fn, kernel_fn) of the equivalent `stax.serial` network.

    Dense layers use NTK parameterization (stax's default) and b_std=None (no bias) when σ_b = 0.
    """
    sigma_w, sigma_b = net.sigmas
    b_std = sigma_b if sigma_b != 0.0 else None
    layers = []
    for width in net.hidden:
        layers += [stax.Dense(width, W_std=sigma_w, b_std=b_std), stax_activation(net.activation, deg)]
    layers.append(stax.Dense(net.out_dim, W_std=sigma_w, b_std=b_std))
    return stax.serial(*layers)


def nt_kernels(net: MLP, x: Array, deg: int = NUMERICAL_DEG) -> tuple[Array, Array]:
    """(Σ^l, Θ^l)(x_i, x_j) from neural-tangents' kernel_fn, unjitted (see design.md: jitting it
    can leave its diagonal √(prod − nngp²) 1e-8 off); x: (n, m_0) → two (n, n)."""
    _, _, kernel_fn = stax_network(net, deg)
    kernel = kernel_fn(x, x, ("nngp", "ntk"))
    return kernel.nngp, kernel.ntk


def nt_theta(net: MLP, x: Array) -> Array:
    """Θ^l(x_i, x_j) from neural-tangents' analytic kernel_fn; x: (n, m_0) → (n, n)."""
    return nt_kernels(net, x)[1]


def nt_empirical_fn(net: MLP, implementation: str) -> Any:
    """neural-tangents' empirical NTK function of the stax network (for benchmarks)."""
    _, apply_fn, _ = stax_network(net)
    impl = nt.NtkImplementation[implementation]
    return nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl)
