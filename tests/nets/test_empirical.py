"""Empirical NTK: structured == jacobian == brute-force jacrev of the module's own apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim.nets.empirical import auto_chunk, bytes_per_seed


def brute_force_ntk(net: ntksim.MLP, variables: dict, x: jax.Array) -> jax.Array:
    """Θ from the full Jacobian of net.apply over the whole batch, flattened (i, a) ↦ i·m_l + a.

    Full-precision matmuls, as ntksim's own kernels (GPUs default to TF32 for float32)."""
    with jax.default_matmul_precision("highest"):
        jac = jax.jacrev(lambda p: net.apply({"params": p}, x).reshape(-1))(variables["params"])
    flat = [j.reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)]
    return sum(jnp.matmul(j, j.T, precision="highest") for j in flat) / x.shape[0]


CASES = [
    # (activation, depth, width, out_dim, sigma_b, schedule)
    (ntksim.Activation.preset("relu"), 3, 7, 1, None, "quadratic"),
    (ntksim.Activation.preset("abs"), 2, 9, 3, 0.5, "constant"),
    (ntksim.Activation(0.3, -0.7), 4, 5, 2, 0.2, "quadratic"),
    (ntksim.Activation.preset("linear"), 3, 6, 2, None, "constant"),
    (ntksim.Activation.preset("leaky_relu", alpha=0.1), 1, 4, 3, 0.7, "quadratic"),
]


@pytest.mark.parametrize(("act", "depth", "width", "out_dim", "sigma_b", "schedule"), CASES)
def test_methods_agree_with_brute_force(act, depth, width, out_dim, sigma_b, schedule, tol) -> None:
    net = ntksim.MLP(act, depth=depth, width=width, out_dim=out_dim, sigma_b=sigma_b, schedule=schedule)
    x = ntksim.gaussian(jax.random.PRNGKey(0), 6, 4)  # unequal norms
    variables = net.init(jax.random.PRNGKey(1), x)
    ref = brute_force_ntk(net, variables, x)
    scale = float(jnp.max(jnp.abs(ref)))
    assert ref.shape == (6 * out_dim, 6 * out_dim)
    for method in ("structured", "jacobian"):
        k = ntksim.empirical_ntk(net, variables, x, method=method)
        assert k.shape == ref.shape
        np.testing.assert_allclose(k, ref, rtol=0, atol=tol.rtol * scale, err_msg=method)


def test_row_layout_is_input_major() -> None:
    """Row i·m_l + a is output a at input i: block (i, i) must equal Θ(x_i, x_i) alone."""
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=5, out_dim=3)
    x = ntksim.gaussian(jax.random.PRNGKey(0), 4, 3)
    variables = net.init(jax.random.PRNGKey(1), x)
    k = ntksim.empirical_ntk(net, variables, x)
    single = ntksim.empirical_ntk(net, variables, x[2:3])  # n = 1: no 1/n rescaling beyond 1
    np.testing.assert_allclose(4 * k[6:9, 6:9], single, rtol=1e-5, atol=1e-6)


def test_accepts_params_collection_and_rejects_unknown_method() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("abs"), depth=2, width=4)
    x = ntksim.sphere(jax.random.PRNGKey(0), 3, 2)
    variables = net.init(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(
        ntksim.empirical_ntk(net, variables, x), ntksim.empirical_ntk(net, variables["params"], x)
    )
    with pytest.raises(ValueError, match="unknown eNTK method"):
        ntksim.empirical_ntk(net, variables, x, method="magic")


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_seed_batches_equal_single_seeds(method: str, tol) -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=3, width=6, out_dim=2, sigma_b=0.1)
    x = ntksim.sphere(jax.random.PRNGKey(0), 5, 3)
    keys = jax.random.split(jax.random.PRNGKey(4), 7)
    batched = ntksim.empirical_ntk_seeds(net, keys, x, method=method, chunk_size=3)  # 3 + 3 + padded 1
    assert batched.shape == (7, 10, 10)
    for s in (0, 4, 6):
        single = ntksim.empirical_ntk(net, net.init(keys[s], x), x, method=method)
        np.testing.assert_allclose(batched[s], single, rtol=tol.rtol, atol=tol.atol)


def test_memory_model_orders_methods() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=3, width=256)
    assert bytes_per_seed(net, 64, 8, "jacobian") > 10 * bytes_per_seed(net, 64, 8, "structured")
    assert auto_chunk(net, 64, 8, "structured", budget_bytes=2**30) >= 1
    assert auto_chunk(net, 64, 8, "jacobian", budget_bytes=1) == 1


@pytest.mark.slow
def test_seed_mean_approaches_limit_and_errors_shrink() -> None:
    """E[K(θ)] → K∞ at large width, and median ‖K − K∞‖₂ falls as m grows (science.md claim 1)."""
    act = ntksim.Activation.preset("relu")
    x = ntksim.sphere(jax.random.PRNGKey(0), 16, 8)
    keys = jax.random.split(jax.random.PRNGKey(1), 32)
    medians = {}
    for width in (16, 512):
        net = ntksim.MLP(act, depth=3, width=width)
        kinf = ntksim.limit_ntk(net, x, backend="closed_form")
        ks = ntksim.empirical_ntk_seeds(net, keys, x)
        medians[width] = float(np.median(ntksim.concentration(ks, kinf)["err_op"]))
        if width == 512:
            mean_err = ntksim.concentration(ks.mean(axis=0), kinf)["rel_op"]
            assert mean_err < 0.02, mean_err
    # theory: ×√32 ≈ 5.7 smaller; demand at least 3×
    assert medians[512] < medians[16] / 3, medians


SHARDED_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
import ntksim
from ntksim.nets.empirical import _empirical_seeds, seed_sharding
assert len(jax.devices()) == 4, jax.devices()
net = ntksim.MLP(ntksim.Activation.preset("abs"), depth=3, width=6, out_dim=2, sigma_b=0.3)
x = ntksim.sphere(jax.random.PRNGKey(0), 5, 3)
keys = jax.random.split(jax.random.PRNGKey(9), 10)
sharded = ntksim.empirical_ntk_seeds(net, keys, x, chunk_size=4)      # 4 + 4 + padded 2
single = ntksim.empirical_ntk_seeds(net, keys, x, chunk_size=3, devices=jax.devices()[:1])
scale = float(jnp.max(jnp.abs(single)))
tol = 1e-12 if jax.config.jax_enable_x64 else 1e-5
np.testing.assert_allclose(sharded, single, rtol=0, atol=tol * scale)
out = _empirical_seeds((net,), "structured", seed_sharding(), keys[:4], x)
assert len(out.sharding.device_set) == 4, out.sharding
print("OK")
"""


def test_seeds_sharded_over_devices_equal_single_device() -> None:
    """Four forced CPU devices: seeds are split across them and the numbers do not change."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("depth", "width", "n", "out_dim", "method"),
    [(3, 256, 64, 1, "structured"), (5, 256, 64, 1, "structured"), (3, 128, 32, 10, "structured"),
     (3, 128, 32, 3, "jacobian"), (4, 64, 32, 2, "jacobian")],
)  # fmt: skip
def test_memory_model_matches_xla_buffer_assignment(depth, width, n, out_dim, method) -> None:
    """bytes_per_seed × seeds against what XLA allocates for the compiled batch.

    Underestimating would let a chunk overflow memory, so at most 30% under; overestimating only
    makes chunks smaller than needed, so up to 3× over (float64 temporaries are leaner)."""
    from ntksim.nets.empirical import _empirical_seeds

    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=depth, width=width, out_dim=out_dim)
    x = jnp.ones((n, 8), net.compute_dtype)
    for seeds in (1, 4):
        keys = jax.random.split(jax.random.PRNGKey(0), seeds)
        stats = _empirical_seeds.lower((net,), method, None, keys, x, True).compile().memory_analysis()
        xla = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
        model = seeds * bytes_per_seed(net, n, 8, method)
        assert 0.7 <= model / xla <= 3.0, (seeds, model / 2**20, xla / 2**20)


# --- several networks from one draw -------------------------------------------------------------
TOGETHER = {
    "family": [ntksim.MLP(ntksim.activation(a), depth=3, width=8) for a in ("relu", "abs", "linear")]
    + [ntksim.MLP(ntksim.activation("leaky_relu", alpha=0.1), depth=3, width=8)],
    "any φ, biases, m_l = 2": [
        ntksim.MLP(ntksim.activation(a), depth=3, width=6, out_dim=2, sigma_b=0.2)
        for a in ("tanh", "relu", "elu")
    ],
    "σ_w differs": [ntksim.MLP(ntksim.activation("relu"), depth=2, width=5, sigma_w=w) for w in (1.0, 1.5)],
    "explicit widths": [
        ntksim.MLP(ntksim.activation(a), depth=3, schedule=(7, 4), out_dim=3, sigma_w=1.2)
        for a in ("selu", "gelu", "sin")
    ],
}


@pytest.mark.parametrize("case", list(TOGETHER))
@pytest.mark.parametrize(
    ("method", "chunk"), [("structured", None), ("structured", 2), ("jacobian", None), ("nngp", None)]
)
def test_networks_computed_together_equal_each_alone_bit_for_bit(
    case: str, method: str, chunk: int | None
) -> None:
    """One draw per seed serves every network, and each network's kernels are exactly what it gets
    alone (XLA sees the same subgraph and folds the same constants): the sweep's default path
    computes its activations together and must give the numbers it gave one cell at a time."""
    nets = TOGETHER[case]
    x = ntksim.sphere(jax.random.PRNGKey(3), 5, 4)
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    together = ntksim.empirical_ntk_seeds_together(nets, keys, x, method, chunk)
    assert len(together) == len(nets)
    for net, kernels in zip(nets, together, strict=True):
        alone = np.asarray(ntksim.empirical_ntk_seeds(net, keys, x, method, chunk))
        assert kernels.shape == alone.shape == (3, 5 * net.out_dim, 5 * net.out_dim)
        assert np.array_equal(kernels, alone), (net.activation.name, np.max(np.abs(kernels - alone)))


def test_networks_computed_together_at_a_sweep_s_sizes_equal_each_alone() -> None:
    """Larger matmuls take other XLA code paths: depth 4, m = 64 (widths up to 576), n = 32."""
    nets = [ntksim.MLP(ntksim.activation(a), depth=4, width=64) for a in ("relu", "abs", "tanh")]
    x = ntksim.sphere(jax.random.PRNGKey(5), 32, 8)
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    together = ntksim.empirical_ntk_seeds_together(nets, keys, x)
    for net, kernels in zip(nets, together, strict=True):
        assert np.array_equal(kernels, ntksim.empirical_ntk_seeds(net, keys, x)), net.activation.name


def test_networks_computed_together_draw_their_parameters_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import ntksim.nets.empirical as empirical

    drawn = []
    original = empirical.init_params

    def counting(net, key, in_dim):
        drawn.append(net.activation.name)
        return original(net, key, in_dim)

    monkeypatch.setattr(empirical, "init_params", counting)
    nets = [ntksim.MLP(ntksim.activation(a), depth=2, width=11, out_dim=3) for a in ("relu", "abs", "tanh")]
    x = ntksim.sphere(jax.random.PRNGKey(3), 4, 5)  # shapes no other test compiles: traced afresh
    ntksim.empirical_ntk_seeds_together(nets, jax.random.split(jax.random.PRNGKey(0), 2), x)
    assert drawn == ["relu"]  # once, in the traced program: one draw serves all three


def test_networks_that_draw_different_parameters_are_refused() -> None:
    x = ntksim.sphere(jax.random.PRNGKey(3), 5, 4)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    relu = ntksim.activation("relu")
    for other in (
        ntksim.MLP(relu, depth=4, width=8),  # depth
        ntksim.MLP(relu, depth=3, width=9),  # widths
        ntksim.MLP(relu, depth=3, width=8, out_dim=2),
        ntksim.MLP(relu, depth=3, width=8, sigma_b=0.1),  # biases are drawn too
        ntksim.MLP(relu, depth=3, width=8, dtype="float16"),
    ):
        with pytest.raises(ValueError, match="draw different parameters"):
            ntksim.empirical_ntk_seeds_together([ntksim.MLP(relu, depth=3, width=8), other], keys, x)
    with pytest.raises(ValueError, match="no networks"):
        ntksim.empirical_ntk_seeds_together([], keys, x)


def test_memory_model_bounds_networks_computed_together() -> None:
    """k networks from one draw: XLA allocates no more than k one-network batches (the chunking
    divides the memory budget by k)."""
    from ntksim.nets.empirical import _empirical_seeds

    nets = tuple(ntksim.MLP(ntksim.activation(a), depth=4, width=64) for a in ("relu", "abs", "tanh", "elu"))
    x = jnp.ones((32, 8), nets[0].compute_dtype)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    stats = _empirical_seeds.lower(nets, "structured", None, keys, x, True).compile().memory_analysis()
    xla = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    model = len(nets) * 4 * bytes_per_seed(nets[0], 32, 8, "structured")
    assert xla <= model / 0.7, (xla / 2**20, model / 2**20)


# --- any activation ---------------------------------------------------------------------------
ANY_PHI = [
    ntksim.activation("tanh"),
    ntksim.activation("elu"),
    ntksim.activation("selu"),
    ntksim.activation("gelu"),
    ntksim.activation(lambda s: jnp.where(s > 0, s, 0.2 * jnp.sin(s)), name="mine", kinks=(0.0,)),
]


@pytest.mark.parametrize("act", ANY_PHI, ids=lambda a: a.name)
def test_methods_agree_with_brute_force_for_any_phi(act, tol) -> None:
    """Structured == Jacobian == jacrev of net.apply for presets and a user's φ (σ_w at the EOC
    for σ_b = 0.2; GELU 0.5, where its EOC point is stable), with bias and m_l = 2."""
    net = ntksim.MLP(act, depth=3, width=5, out_dim=2, sigma_b=0.5 if act.name == "gelu" else 0.2)
    x = ntksim.gaussian(jax.random.PRNGKey(0), 5, 3)
    variables = net.init(jax.random.PRNGKey(1), x)
    ref = brute_force_ntk(net, variables, x)
    scale = float(jnp.max(jnp.abs(ref)))
    for method in ("structured", "jacobian"):
        k = ntksim.empirical_ntk(net, variables, x, method=method)
        np.testing.assert_allclose(k, ref, rtol=0, atol=tol.rtol * scale, err_msg=method)


def brute_force_nngp(net: ntksim.MLP, variables: dict, x: jax.Array) -> jax.Array:
    """The readout layer's share of the NTK: the Jacobian contraction over W_l and b_l only."""
    depth = net.depth
    with jax.default_matmul_precision("highest"):
        jac = jax.jacrev(lambda p: net.apply({"params": p}, x).reshape(-1))(variables["params"])
    leaves = [jac[k] for k in (f"W{depth}", f"b{depth}") if k in jac]
    flat = [j.reshape(j.shape[0], -1) for j in leaves]
    return sum(jnp.matmul(j, j.T, precision="highest") for j in flat) / x.shape[0]


@pytest.mark.parametrize("act", [ntksim.activation("relu"), ntksim.activation("tanh")], ids=lambda a: a.name)
@pytest.mark.parametrize("sigma_b", [None, 0.3])
def test_empirical_nngp_is_the_readout_layers_kernel(act, sigma_b, tol) -> None:
    net = ntksim.MLP(act, depth=3, width=6, out_dim=2, sigma_b=sigma_b, sigma_w=1.3)
    x = ntksim.gaussian(jax.random.PRNGKey(0), 4, 3)
    variables = net.init(jax.random.PRNGKey(1), x)
    ref = brute_force_nngp(net, variables, x)
    got = ntksim.empirical_nngp(net, variables, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol.rtol * float(jnp.max(jnp.abs(ref))))
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    batch = ntksim.empirical_nngp_seeds(net, keys, x)
    np.testing.assert_allclose(
        batch[0], ntksim.empirical_nngp(net, net.init(keys[0], x), x), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "elu"])
def test_seed_mean_approaches_the_limit_as_widths_grow(name: str) -> None:
    """‖mean_s K(θ_s) − K∞‖ shrinks with m for the NTK and the NNGP (σ_b = 0.2 at the EOC)."""
    act = ntksim.activation(name)
    x = ntksim.sphere(jax.random.PRNGKey(0), 6, 4)
    keys = jax.random.split(jax.random.PRNGKey(1), 24)
    errors = {"ntk": [], "nngp": []}
    pairs = {"ntk": (ntksim.empirical_ntk_seeds, ntksim.limit_ntk),
             "nngp": (ntksim.empirical_nngp_seeds, ntksim.limit_nngp)}  # fmt: skip
    for width in (16, 1024):  # the seed mean's own noise, O(1/√(24 m)), is ~0.02 at m = 1024
        net = ntksim.MLP(act, depth=3, width=width, sigma_b=0.2, schedule="constant")
        for kernel, (empirical, limit) in pairs.items():
            mean = np.asarray(empirical(net, keys, x), np.float64).mean(0)
            kinf = np.asarray(limit(net, x), np.float64)
            errors[kernel].append(np.linalg.norm(mean - kinf, 2) / np.linalg.norm(kinf, 2))
    for kernel, (narrow, wide) in errors.items():
        assert wide < 0.5 * narrow and wide < 0.04, (kernel, narrow, wide)


def test_eoc_sigma_w_first_needed_inside_a_compiled_call() -> None:
    """A fresh φ's EOC σ_w, first asked for while tracing the seed batch, is computed eagerly
    (it once leaked tracers into NumPy)."""
    act = ntksim.activation(lambda s: jnp.tanh(1.1 * s), name="fresh_tanh")
    net = ntksim.MLP(act, depth=2, width=4, sigma_b=0.3)
    x = ntksim.sphere(jax.random.PRNGKey(0), 3, 4)
    ks = ntksim.empirical_ntk_seeds(net, jax.random.split(jax.random.PRNGKey(1), 2), x)
    assert ks.shape == (2, 3, 3) and bool(jnp.all(jnp.isfinite(ks)))
    assert net.sigmas[0] == pytest.approx(ntksim.eoc(act, 0.3).sigma_w)
