"""The MLP in NTK parameterization (science.md, "The network").

    h^1     = (σ_w/√m_0) W^1 x + σ_b β^1
    h^{k+1} = (σ_w/√m_k) W^{k+1} φ(h^k) + σ_b β^{k+1}
    N(x)    = h^l

Parameters are the flat collection `{"W1": (m_0, m_1), "b1": (m_1,), "W2": …}` (`W<k>` is the
transpose of the W^k above, so h = z @ W; `b<k>` exists only when σ_b ≠ 0); entries iid N(0, 1).
The arithmetic lives in the pure function `forward`, which the flax module and the structured NTK both use, so
there is a single definition of the network.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from ntksim.activations import Activation, AnyActivation, Elementwise
from ntksim.activations import activation as make_activation
from ntksim.activations.eoc import resolve_sigmas
from ntksim.nets.widths import Schedule, hidden_widths

Params = Mapping[str, Array]


def default_dtype() -> jnp.dtype:
    """float64 when JAX's x64 flag is on, else float32."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


# --- the scalars of the arithmetic -------------------------------------------------------------
# Every scalar the network and its kernels multiply arrays by is computed by one of these
# functions, in Python from σ_w, σ_b and a fan-in. The sweep compiles one program per shape with
# σ_w and σ_b traced (ntksim.nets.empirical): it passes `HostScalars` computed by the same functions,
# so the traced program multiplies by exactly the numbers the static one has as constants (XLA
# would otherwise evaluate e.g. (σ_w/√m)² in its own order and round differently).


def weight_scale(sigma_w: Any, fan_in: int) -> Any:
    """σ_w/√m_{k-1}, the factor of a layer's matmul."""
    if isinstance(sigma_w, HostScalars):
        return sigma_w.values[("weight_scale", fan_in)]
    return sigma_w / math.sqrt(fan_in)


def weight_scale_sq(sigma_w: Any, fan_in: int) -> Any:
    """(σ_w/√m_{k-1})², the factor of a layer's Gram term in the structured eNTK."""
    if isinstance(sigma_w, HostScalars):
        return sigma_w.values[("weight_scale_sq", fan_in)]
    return weight_scale(sigma_w, fan_in) ** 2


def readout_scale(sigma_w: Any, fan_in: int) -> Any:
    """σ_w²/m_{l-1}, the factor of the empirical NNGP's Gram."""
    if isinstance(sigma_w, HostScalars):
        return sigma_w.values[("readout_scale", fan_in)]
    return sigma_w**2 / fan_in


def bias_scale(sigma_b: Any) -> Any:
    """σ_b, the factor of a layer's bias."""
    return sigma_b.values[("bias_scale", 0)] if isinstance(sigma_b, HostScalars) else sigma_b


def bias_scale_sq(sigma_b: Any) -> Any:
    """σ_b², the bias term of a Gram."""
    return sigma_b.values[("bias_scale_sq", 0)] if isinstance(sigma_b, HostScalars) else sigma_b**2


@jax.tree_util.register_pytree_node_class
class HostScalars:
    """σ_w or σ_b as the table of every scalar derived from it (by the functions above, in Python),
    for the fan-ins of one network: a pytree whose leaves are those scalars, so they can be traced
    arguments of a compiled function while the arithmetic stays the static path's."""

    def __init__(self, values: dict[tuple[str, int], Any]) -> None:
        self.values = values

    @classmethod
    def weights(cls, sigma_w: float, fan_ins: Sequence[int]) -> HostScalars:
        fns = (weight_scale, weight_scale_sq, readout_scale)
        return cls({(fn.__name__, m): fn(float(sigma_w), m) for fn in fns for m in sorted(set(fan_ins))})

    @classmethod
    def biases(cls, sigma_b: float) -> HostScalars:
        return cls({(fn.__name__, 0): fn(float(sigma_b)) for fn in (bias_scale, bias_scale_sq)})

    def tree_flatten(self) -> tuple[list[Any], tuple[tuple[str, int], ...]]:
        keys = tuple(sorted(self.values))
        return [self.values[k] for k in keys], keys

    @classmethod
    def tree_unflatten(cls, keys: tuple[tuple[str, int], ...], leaves: list[Any]) -> HostScalars:
        return cls(dict(zip(keys, leaves, strict=True)))


def forward(
    params: Params,
    x: Array,
    activation: AnyActivation,
    sigma_w: float,
    sigma_b: float,
) -> tuple[Array, list[Array]]:
    """Network output and all pre-activations.

    Args:
      params: `{"W<k>": (m_{k-1}, m_k), "b<k>": (m_k,)}` for k = 1 … l (biases optional).
      x: inputs, shape (n, m_0).
    Returns:
      (h^l of shape (n, m_l), [h^1, …, h^l] with h^k of shape (n, m_k)).
    """
    z = x
    pre = []
    for k in range(1, depth_of(params) + 1):
        kernel = params[f"W{k}"]
        # Full precision: GPUs would otherwise run float32 matmuls in TF32 (~1e-3 relative).
        h = weight_scale(sigma_w, kernel.shape[0]) * jnp.matmul(z, kernel, precision="highest")
        if f"b{k}" in params:
            h = h + bias_scale(sigma_b) * params[f"b{k}"][None]
        pre.append(h)
        z = activation(h)
    return pre[-1], pre


class MLP(nn.Module):
    """l-layer MLP with any activation (the family φ(s) = a·s + b·|s|, a preset, or a user's φ),
    at the Edge of Chaos by default.

    Attributes:
      activation: the φ of every hidden layer.
      depth: number of weight layers l (≥ 1).
      width: base width m of the schedule.
      out_dim: m_l.
      schedule: "quadratic" (m_k = k²m), "constant" (m_k = m) or explicit (m_1, …, m_{l-1}).
      sigma_w, sigma_b: σ_b = None means 0 for every φ, i.e. no bias parameters at all (any other
        value adds them); σ_w = None means the EOC's σ_w at that σ_b (`ntksim.eoc`): the family's
        1/√(a²+b²); tanh's 1 at σ_b = 0; GELU has a stable one only from σ_b ≈ 0.42 (NoEOCPoint
        below), SiLU from ≈ 0.78.
      dtype: parameter and compute dtype; None follows JAX's x64 flag.
    """

    activation: AnyActivation
    depth: int
    width: int | None = None
    out_dim: int = 1
    schedule: Schedule = "quadratic"
    sigma_w: float | None = None
    sigma_b: float | None = None
    dtype: Any = None

    def __post_init__(self) -> None:
        # A preset name or a plain JAX function is what users try first: accept both, as
        # `ntksim.activation` does, instead of failing deep inside flax.
        if isinstance(self.activation, str) or (
            callable(self.activation) and not isinstance(self.activation, Activation | Elementwise)
        ):
            object.__setattr__(self, "activation", make_activation(self.activation))
        elif not isinstance(self.activation, Activation | Elementwise):
            got = type(self.activation).__name__
            raise TypeError(
                f"MLP activation: expected a preset name, ntksim.activation(...) or a JAX function, got {got}"
            )
        if self.dtype is not None and jnp.dtype(self.dtype) == jnp.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
            raise ValueError(
                "MLP dtype float64 needs JAX's x64 mode (JAX would silently compute in float32): "
                "jax.config.update('jax_enable_x64', True) first, or JAX_ENABLE_X64=1"
            )
        # A tuple keeps the module hashable, so it can be a static argument of jax.jit.
        if not isinstance(self.schedule, str):
            object.__setattr__(self, "schedule", tuple(int(w) for w in self.schedule))
        super().__post_init__()

    @property
    def hidden(self) -> tuple[int, ...]:
        """(m_1, …, m_{l-1})."""
        return hidden_widths(self.depth, self.width, self.schedule)

    @property
    def sigmas(self) -> tuple[float, float]:
        """Resolved (σ_w, σ_b)."""
        return resolve_sigmas(self.activation, self.sigma_w, self.sigma_b)

    @property
    def compute_dtype(self) -> jnp.dtype:
        return default_dtype() if self.dtype is None else jnp.dtype(self.dtype)

    def layer_widths(self, in_dim: int) -> tuple[int, ...]:
        """(m_0, m_1, …, m_l)."""
        if self.out_dim < 1:
            raise ValueError(f"out_dim must be a positive integer, got {self.out_dim}")
        return (in_dim, *self.hidden, self.out_dim)

    def num_params(self, in_dim: int) -> int:
        """Number of scalar parameters P."""
        widths = self.layer_widths(in_dim)
        with_bias = self.sigmas[1] != 0.0
        return sum(m_in * m_out + (m_out if with_bias else 0) for m_in, m_out in itertools.pairwise(widths))

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: (n, m_0) → N(x): (n, m_l)."""
        if x.ndim != 2:
            raise ValueError(f"MLP expects inputs of shape (n, in_dim), got {x.shape}")
        dtype = self.compute_dtype
        sigma_w, sigma_b = self.sigmas
        widths = self.layer_widths(x.shape[-1])
        normal = nn.initializers.normal(stddev=1.0)
        params = {}
        for k in range(1, len(widths)):
            params[f"W{k}"] = self.param(f"W{k}", normal, (widths[k - 1], widths[k]), dtype)
            if sigma_b != 0.0:
                params[f"b{k}"] = self.param(f"b{k}", normal, (widths[k],), dtype)
        out, _ = forward(params, x.astype(dtype), self.activation, sigma_w, sigma_b)
        return out


def depth_of(params: Params) -> int:
    """Number of weight layers l in a parameter collection."""
    return sum(1 for name in params if name.startswith("W"))


def init_params(net: MLP, key: Array, in_dim: int) -> dict[str, Array]:
    """The `params` collection exactly as `net.init(key, x)` draws it.

    Pure in `key`, so it can be jit-ed and vmap-ed over many seeds.
    """
    dummy = jnp.zeros((1, in_dim), net.compute_dtype)
    return dict(net.init(key, dummy)["params"])


def sample_widths(widths: Sequence[int]) -> str:
    """'m_1-m_2-…' as written in results.csv."""
    return "-".join(str(w) for w in widths)
