"""Empirical NTK matrix K(θ) = (1/n)[Θ_θ(x_i, x_j)], rows ordered (i, a) ↦ i·m_l + a.

Two methods that must agree to round-off:
- "structured": the layer-wise Gram form of science.md. One forward pass stores the
  pre-activations; the backward signals δ^k_a = ∂N_a/∂h^k for all m_l outputs are propagated
  together, one layer at a time, and each layer adds
  [(σ_w²/m_{k-1})⟨z^{k-1}, z^{k-1}'⟩ + σ_b²]·⟨δ^k_a, δ^k_b'⟩ to Θ before its δ is dropped.
  No Jacobian is formed.
- "jacobian": per-example parameter Jacobians (jit + vmap of jacrev) contracted leaf by leaf;
  the plain reference, memory O(n·m_l·P).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ntksim.activations import Activation, AnyActivation
from ntksim.nets import program_store
from ntksim.nets.cpu_compile import FastCompiled, fast_compiled
from ntksim.nets.model import (
    MLP,
    HostScalars,
    Params,
    bias_scale_sq,
    depth_of,
    forward,
    init_params,
    readout_scale,
    weight_scale,
    weight_scale_sq,
)

METHODS: tuple[str, ...] = ("structured", "jacobian")


def structured_ntk(
    params: Params, x: Array, activation: AnyActivation, sigma_w: float, sigma_b: float
) -> Array:
    """Structured eNTK. params: forward's layout; x: (n, m_0) → (n·m_l, n·m_l)."""
    out, pre = forward(params, x, activation, sigma_w, sigma_b)
    n, out_dim = out.shape
    # Backward signals are kept transposed: column a·n + i of d is δ^k_a(x_i), so d has shape
    # (m_k, m_l·n). The backward step is then W^k @ d, a plain GEMM on W's stored layout; the
    # row-major d @ W.T made XLA:CPU copy Wᵀ first, 6x the GEMM's own time at m = 1024.
    d = jnp.repeat(jnp.eye(out_dim, dtype=out.dtype), n, axis=1)  # δ^l_a = e_a at every input
    theta = jnp.zeros((out_dim * n, out_dim * n), out.dtype)  # rows and columns (a, i)
    for k in range(depth_of(params), 0, -1):
        z_prev = x if k == 1 else activation(pre[k - 2])
        scale = weight_scale(sigma_w, z_prev.shape[1])
        gram_z = weight_scale_sq(sigma_w, z_prev.shape[1]) * (z_prev @ z_prev.T)
        if f"b{k}" in params:
            gram_z = gram_z + bias_scale_sq(sigma_b)
        theta = theta + jnp.tile(gram_z, (out_dim, out_dim)) * (d.T @ d)
        if k > 1:
            slope = jnp.tile(activation.derivative(pre[k - 2]).T, (1, out_dim))  # (m_{k-1}, m_l·n)
            d = slope * (scale * (params[f"W{k}"] @ d))
    # (a, i) order → (i, a) order.
    theta = theta.reshape(out_dim, n, out_dim, n).transpose(1, 0, 3, 2).reshape(n * out_dim, -1)
    return theta / n


def jacobian_ntk(
    params: Params, x: Array, activation: AnyActivation, sigma_w: float, sigma_b: float
) -> Array:
    """Jacobian-contraction eNTK. params: forward's layout; x: (n, m_0) → (n·m_l, n·m_l)."""

    def single(p: Params, xi: Array) -> Array:
        return forward(p, xi[None], activation, sigma_w, sigma_b)[0][0]

    jac = jax.vmap(jax.jacrev(single), in_axes=(None, 0))(params, x)  # leaves (n, m_l, *shape)
    n, out_dim = x.shape[0], jac["W1"].shape[1]
    theta = sum((j.reshape(n * out_dim, -1) @ j.reshape(n * out_dim, -1).T) for j in jax.tree.leaves(jac))
    return theta / n


def feature_nngp(
    params: Params, x: Array, activation: AnyActivation, sigma_w: float, sigma_b: float
) -> Array:
    """Empirical NNGP of one draw: the readout layer's kernel [(σ_w²/m_{l−1})⟨z^{l−1}, z^{l−1}'⟩
    + σ_b²] ⊗ I_{m_l} / n (science.md, "The NNGP"). x: (n, m_0) → (n·m_l, n·m_l)."""
    depth = depth_of(params)
    out_dim = params[f"W{depth}"].shape[1]
    if depth == 1:
        z = x
    else:
        hidden = {k: v for k, v in params.items() if k[1:] != str(depth)}  # all but the readout
        _, pre = forward(hidden, x, activation, sigma_w, sigma_b)
        z = activation(pre[-1])
    gram = readout_scale(sigma_w, z.shape[1]) * (z @ z.T)
    if f"b{depth}" in params:
        gram = gram + bias_scale_sq(sigma_b)
    return jnp.kron(gram, jnp.eye(out_dim, dtype=gram.dtype)) / x.shape[0]


# "nngp" is not an eNTK method; it shares the seed batching below (see empirical_nngp_seeds).
_KERNELS: dict[str, Callable[..., Array]] = {
    "structured": structured_ntk,
    "jacobian": jacobian_ntk,
    "nngp": feature_nngp,
}


def kernel_fn(method: str) -> Callable[..., Array]:
    if method not in _KERNELS:
        raise ValueError(f"unknown eNTK method {method!r}; choose one of {', '.join(METHODS)}")
    return _KERNELS[method]


# float32 matmuls on GPUs default to TF32 (~1e-3 relative), a few percent of err_op at large m;
# ntksim's numbers must not depend on the device, so kernels are traced at full precision.
MATMUL_PRECISION = "highest"


@partial(jax.jit, static_argnames=("net", "method"))
def _empirical(net: MLP, method: str, params: Params, x: Array) -> Array:
    sigma_w, sigma_b = net.sigmas
    with jax.default_matmul_precision(MATMUL_PRECISION):
        return kernel_fn(method)(params, x.astype(net.compute_dtype), net.activation, sigma_w, sigma_b)


def empirical_ntk(net: MLP, variables: Any, x: Array, method: str = "structured") -> Array:
    """K(θ) for one parameter draw.

    Args:
      net: the MLP.
      variables: `net.init(...)`'s output (or its `params` collection).
      x: inputs, shape (n, m_0).
      method: "structured" (fast, no Jacobian) or "jacobian" (reference).
    Returns:
      (n·m_l, n·m_l) array, already divided by n.
    """
    kernel_fn(method)  # validate before tracing
    params = variables["params"] if "params" in variables else variables
    return _empirical(net, method, dict(params), jnp.asarray(x))


@fast_compiled(static_argnames=("nets", "method", "sharding", "vectorize"))
def _empirical_seeds(
    nets: tuple[MLP, ...],
    method: str,
    sharding: NamedSharding | None,
    keys: Array,
    x: Array,
    vectorize: bool = True,
) -> Array | tuple[Array, ...]:
    """The kernels of networks that draw the same parameters (`parameter_draw`), from one draw
    per seed: (S, n·m_l, n·m_l) for one network, a tuple of them for several."""
    x = x.astype(nets[0].compute_dtype)
    kernel = kernel_fn(method)
    if sharding is not None:  # seeds split across devices; every device holds all of x
        keys = jax.lax.with_sharding_constraint(keys, sharding)

    def one(key: Array) -> Array | tuple[Array, ...]:
        # Parameters are drawn inside the compiled function: no host round trip per seed. One
        # draw serves every network: drawing is most of a small program's compilation and of a
        # wide one's compute, and each network's kernel is still its own static subgraph (XLA
        # folds the same constants into it), bit-identical to computing that network alone.
        params = init_params(nets[0], key, x.shape[1])
        kernels = tuple(kernel(params, x, net.activation, *net.sigmas) for net in nets)
        return kernels[0] if len(nets) == 1 else kernels

    with jax.default_matmul_precision(MATMUL_PRECISION):
        # vmap suits accelerators; on CPU, batched matmuls and batched PRNG draws take XLA's
        # slow paths (measured 4x slower at depth 5, m = 1024), so seeds run one after another.
        out = jax.vmap(one)(keys) if vectorize else jax.lax.map(one, keys)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)


def parameter_draw(net: MLP) -> tuple[Any, ...]:
    """What `init_params` draws depends on: equal for networks that draw the same numbers from
    the same key (they may differ in φ, σ_w and σ_b ≠ 0)."""
    return (net.depth, net.hidden, net.out_dim, np.dtype(net.compute_dtype).name, net.sigmas[1] != 0.0)


# --- one compilation per shape ---------------------------------------------------------------
# `_empirical_seeds` takes the whole MLP as a static argument, so every (a, b), σ_w and σ_b is a
# new compilation although the arrays have the same shapes. The sweep's path below splits the
# network into what shapes the arrays (depth, widths, m_l, whether there are biases, the dtype,
# and φ itself unless it is the family) and the numbers, which are traced: cells that differ only
# in the family's (a, b), σ_w or σ_b share one compiled program. The numbers reach the kernels as
# weakly typed scalars computed in Python by the static path's own functions (model.HostScalars),
# so every scalar is the static path's. The results still differ in the last bits: with constants
# XLA's algebraic simplifier folds scalar chains (c·G)/n into G·(c/n), which it cannot do with a
# traced c (measured: 15 of quick.yaml's 96 err_op values differ, by at most 2.5e-9 relative).
# So the static path stays the default (bit-identical to earlier runs); `ntk.traced: true` opts in.

_PLACEHOLDER = Activation(1.0, 1.0, "traced")  # stands for every family member in a shape key


def shape_key(net: MLP) -> MLP:
    """The network with every traced number replaced by a fixed one: equal for all networks that
    differ only in the family's (a, b), σ_w or σ_b (the presence of biases, σ_b ≠ 0, is kept).
    Draws exactly the same parameters as `net` from the same key."""
    _, sigma_b = net.sigmas
    activation = _PLACEHOLDER if isinstance(net.activation, Activation) else net.activation
    return net.clone(activation=activation, sigma_w=1.0, sigma_b=None if sigma_b == 0.0 else 1.0, parent=None)


def traced_numbers(net: MLP, in_dim: int) -> tuple[tuple[float, ...], HostScalars, HostScalars]:
    """((a, b) of a family φ, else (); σ_w's and σ_b's scalars for the network's fan-ins), all
    Python floats (weakly typed when traced)."""
    sigma_w, sigma_b = net.sigmas
    act = net.activation
    coefficients = (float(act.a), float(act.b)) if isinstance(act, Activation) else ()
    fan_ins = net.layer_widths(in_dim)[:-1]
    return coefficients, HostScalars.weights(sigma_w, fan_ins), HostScalars.biases(sigma_b)


def _family(coefficients: tuple[Any, ...], fallback: AnyActivation) -> AnyActivation:
    """The family φ with (possibly traced) coefficients, through Activation's own φ and φ'."""
    if not coefficients:
        return fallback
    act = object.__new__(Activation)  # no __post_init__: it would call float() on tracers
    object.__setattr__(act, "a", coefficients[0])
    object.__setattr__(act, "b", coefficients[1])
    object.__setattr__(act, "name", "traced")
    return act


@fast_compiled(static_argnames=("shape", "method", "sharding", "vectorize"))
def _empirical_seeds_traced(
    shape: MLP,
    method: str,
    sharding: NamedSharding | None,
    keys: Array,
    x: Array,
    coefficients: tuple[Any, ...],
    sigma_w: Any,
    sigma_b: Any,
    vectorize: bool = True,
) -> Array:
    x = x.astype(shape.compute_dtype)
    kernel = kernel_fn(method)
    activation = _family(coefficients, shape.activation)
    if sharding is not None:
        keys = jax.lax.with_sharding_constraint(keys, sharding)

    def one(key: Array) -> Array:
        return kernel(init_params(shape, key, x.shape[1]), x, activation, sigma_w, sigma_b)

    with jax.default_matmul_precision(MATMUL_PRECISION):
        out = jax.vmap(one)(keys) if vectorize else jax.lax.map(one, keys)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)


def _seed_batch(
    nets: tuple[MLP, ...],
    method: str,
    sharding: NamedSharding | None,
    keys: Array,
    x: Array,
    vectorize: bool,
    traced: bool,
    fast_compile: bool = False,
) -> Array | tuple[Array, ...]:
    """One compiled call over a batch of seeds: the static path (one program per tuple of
    networks) or the traced one (one per shape, a single network); shapes as `_empirical_seeds`."""
    if not traced:
        arguments: tuple[Any, ...] = (nets, method, sharding, keys, x, vectorize)
        static: tuple[Any, ...] = (nets, method, vectorize)
        return _call(_empirical_seeds, arguments, sharding, static, (keys, x), fast_compile)
    (net,) = nets
    shape = shape_key(net)
    numbers = traced_numbers(net, x.shape[1])
    arguments = (shape, method, sharding, keys, x, *numbers, vectorize)
    dynamic = (keys, x, *numbers)
    static = (shape, method, vectorize)
    return _call(_empirical_seeds_traced, arguments, sharding, static, dynamic, fast_compile)


def _call(
    programs: FastCompiled,
    arguments: tuple,
    sharding: NamedSharding | None,
    static: tuple,
    dynamic: tuple,
    fast_compile: bool,
) -> Array | tuple[Array, ...]:
    """`programs`' default or fast-compiled jit (`FastCompiled.choose`) called with `arguments`,
    through ntksim's program store where it applies (one device, the persistent cache on:
    `program_store.compiled`); `static` and `dynamic` split `arguments`."""
    jitted = programs.choose(fast_compile)
    if jitted is not programs.default:
        static = (*static, "fast_compile")  # another executable: another name in the store
    if sharding is None:  # a stored program is one device's
        program = program_store.compiled(programs, static, dynamic, lambda: jitted.lower(*arguments))
        if program is not None:
            return program(*dynamic)
    return jitted(*arguments)


def seed_sharding(devices: list | None = None) -> NamedSharding | None:
    """Sharding of a seed batch's leading axis over `devices` (default: all local devices).

    None for a single device, where sharding would only add overhead.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return None
    return NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec("seeds"))


def bytes_per_seed(net: MLP, n: int, in_dim: int, method: str) -> int:
    """Peak working set of one seed, in bytes, from its shapes.

    Model (P parameters, A = n·Σ_k m_k activations, item size s):
      s·(4P + 2A + W), W = 2·n·m_l·P for "jacobian" (the Jacobian and its contraction copy) and
      3·m_l·n·max_k m_k + (n·m_l)² for "structured" (backward signals and Θ).
    4P: the parameters, plus drawing them inside the compiled call keeps a bit array and a
    transformed copy of the layer being drawn. Tested against XLA's buffer assignment
    (`compiled.memory_analysis()`) in tests/nets/test_empirical.py.
    """
    itemsize = jnp.dtype(net.compute_dtype).itemsize
    widths = net.layer_widths(in_dim)
    params = net.num_params(in_dim)
    activations = n * sum(widths[1:])
    out_dim = widths[-1]
    if method == "jacobian":
        work = 2 * n * out_dim * params
    else:
        work = 3 * out_dim * n * max(widths[1:]) + (n * out_dim) ** 2
    return itemsize * (4 * params + 2 * activations + work)


def memory_budget(device: jax.Device | None = None) -> int:
    """Bytes one seed batch may use on a device: half of an accelerator's memory, 2 GiB on CPU."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) // 2
    return 2 * 2**30


def auto_chunk(net: MLP, n: int, in_dim: int, method: str, budget_bytes: int | None = None) -> int:
    """How many seeds to vmap at once (per device) so a batch stays within `budget_bytes`."""
    budget = memory_budget() if budget_bytes is None else budget_bytes
    return max(1, budget // bytes_per_seed(net, n, in_dim, method))


def empirical_ntk_seeds(
    net: MLP,
    keys: Array,
    x: Array,
    method: str = "structured",
    chunk_size: int | None = None,
    devices: list | None = None,
    pad_to: int | None = None,
    traced: bool = False,
    fast_compile: bool = False,
) -> Array:
    """K(θ_s) for a batch of PRNG keys, vmapped in chunks so memory stays bounded.

    With several local devices (GPUs, or CPU devices forced by
    `XLA_FLAGS=--xla_force_host_platform_device_count=N`) each chunk's seeds are split across
    them; the numbers equal the single-device ones to round-off.

    Args:
      keys: (S, 2) PRNG keys, one per seed; parameters are `net.init(keys[s], x)`'s.
      x: (n, m_0).
      chunk_size: seeds per compiled call (over all devices); None picks one from `auto_chunk`
        per device. Rounded up to a multiple of the device count.
      devices: devices to spread seeds over; None means all local devices.
      pad_to: compute at least this many seeds per call (the extra ones repeat the last key and
        are dropped), so a short last seed block reuses the full blocks' compiled program.
      traced: one compiled program per array shape (the family's (a, b), σ_w and σ_b traced
        arguments) instead of one per network. The numbers agree with the static path's to
        round-off, not bit for bit: XLA folds constant scalars into neighbouring products (σ_w²/m
        of the last layer into the final 1/n, for one), which it cannot do with traced ones.
      fast_compile: on a CPU, compile with XLA's quicker options (`ntksim.nets.cpu_compile`): about
        half XLA's time; the numbers equal the default's to round-off, bit for bit for the
        family without biases in float32 with the structured (or NNGP) method and seeds one
        after another on one CPU device (the shipped CPU configs; tested), not in general.
    Returns:
      (S, n·m_l, n·m_l).
    """
    out = _kernels((net,), keys, x, method, chunk_size, devices, pad_to, traced, fast_compile)
    return cast(Array, out)  # one network: one array


def empirical_ntk_seeds_together(
    nets: Sequence[MLP],
    keys: Array,
    x: Array,
    method: str = "structured",
    chunk_size: int | None = None,
    devices: list | None = None,
    fast_compile: bool = False,
) -> list[Array]:
    """`empirical_ntk_seeds` of several networks that draw the same parameters — the same depth,
    widths, m_l, dtype and presence of biases; φ, σ_w and σ_b may differ (`parameter_draw`) — in
    one compiled program per seed batch, from one draw per seed. The draw and most of the
    compilation are shared (a sweep's four activations at one width: 3× faster on a CPU).

    On one CPU device (seeds one after another inside the program) each network's kernels are
    bit-identical to `empirical_ntk_seeds(net, ...)`'s (tested). Where seeds are vmapped
    (accelerators, several devices) a chunk holds the memory budget's k-th part, so the batches,
    and possibly the last bits, differ from a lone network's. fast_compile: as for
    `empirical_ntk_seeds`.

    Returns:
      a list of len(nets) arrays (S, n·m_l, n·m_l), in the order of `nets`.
    """
    nets = tuple(nets)
    if not nets:
        raise ValueError("empirical_ntk_seeds_together: no networks given")
    draws = {parameter_draw(net) for net in nets}
    if len(draws) > 1:
        raise ValueError(
            "empirical_ntk_seeds_together: the networks draw different parameters (depth, widths, "
            "out_dim, dtype or biases differ); only φ, σ_w and σ_b may"
        )
    out = _kernels(nets, keys, x, method, chunk_size, devices, fast_compile=fast_compile)
    return [cast(Array, out)] if len(nets) == 1 else list(out)  # one network: one array, else a tuple


def _kernels(
    nets: tuple[MLP, ...],
    keys: Array,
    x: Array,
    method: str,
    chunk_size: int | None,
    devices: list | None,
    pad_to: int | None = None,
    traced: bool = False,
    fast_compile: bool = False,
) -> Array | tuple[Array, ...]:
    """(S, n·m_l, n·m_l) for one network, a tuple of them for several; in chunks of seeds (see
    `empirical_ntk_seeds`)."""
    kernel_fn(method)
    x = jnp.asarray(x)
    num = keys.shape[0]
    sharding = seed_sharding(devices)
    num_devices = 1 if sharding is None else sharding.mesh.size
    # One device on CPU: a sequential loop inside one compiled call, one seed's memory at a time.
    platform = (devices or jax.local_devices())[0].platform
    vectorize = sharding is not None or platform != "cpu"
    fast_compile = fast_compile and platform == "cpu"  # accelerators: XLA's defaults
    padded = max(num, pad_to or 0)
    if chunk_size is None and vectorize:  # every network's working set is live at once
        budget = memory_budget() // len(nets)
        chunk_size = num_devices * auto_chunk(nets[0], x.shape[0], x.shape[1], method, budget)
    chunk = max(1, min(chunk_size or padded, padded))
    chunk = -(-chunk // num_devices) * num_devices
    parts = []
    for start in range(0, num, chunk):
        batch = keys[start : start + chunk]
        short = chunk - batch.shape[0]
        if short:  # pad the last chunk so every call has one shape (one compilation)
            batch = jnp.concatenate([batch, jnp.repeat(batch[-1:], short, axis=0)])
        out = _seed_batch(nets, method, sharding, batch, x, vectorize, traced, fast_compile)
        parts.append(jax.tree.map(lambda a, keep=chunk - short: a[:keep], out))
    # one network: (S, N, N) per chunk; several: a tuple of those (no stacked copy of them all)
    return parts[0] if len(parts) == 1 else jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def empirical_nngp(net: MLP, variables: Any, x: Array) -> Array:
    """The empirical NNGP of one draw (the readout layer's kernel ⊗ I / n): (n·m_l, n·m_l)."""
    return empirical_ntk(net, variables, x, "nngp")


def empirical_nngp_seeds(
    net: MLP,
    keys: Array,
    x: Array,
    chunk_size: int | None = None,
    devices: list | None = None,
    fast_compile: bool = False,
) -> Array:
    """empirical_nngp for a batch of PRNG keys, batched like `empirical_ntk_seeds`: (S, n·m_l, n·m_l)."""
    return empirical_ntk_seeds(net, keys, x, "nngp", chunk_size, devices, fast_compile=fast_compile)
