"""neural-tangents' infinite-width NTK for an ntksim MLP.

The only module that imports neural_tangents (and so tensorflow); import it lazily.
"""

from __future__ import annotations

from typing import Any

import neural_tangents as nt
from jax import Array
from neural_tangents import stax

from ntksim.model import MLP


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
