"""Concentration metrics against NumPy's norms on hand-built matrices."""

import jax.numpy as jnp
import numpy as np
import pytest

import ntksim


def _sym(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(size=(n, n))
    return a + a.T


def test_metrics_match_numpy(tol) -> None:
    rng = np.random.default_rng(0)
    kinf, k = _sym(rng, 6) + 12 * np.eye(6), None
    k = kinf + 0.1 * _sym(rng, 6)
    m = ntksim.concentration(jnp.asarray(k), jnp.asarray(kinf))
    e = k - kinf
    assert m["err_op"] == pytest.approx(np.linalg.norm(e, 2), rel=tol.rtol * 10)
    assert m["err_fro"] == pytest.approx(np.linalg.norm(e, "fro"), rel=tol.rtol * 10)
    assert m["err_max"] == pytest.approx(np.abs(e).max(), rel=tol.rtol * 10)
    assert m["kinf_op"] == pytest.approx(np.linalg.norm(kinf, 2), rel=tol.rtol * 10)
    assert m["rel_op"] == pytest.approx(m["err_op"] / m["kinf_op"], rel=tol.rtol)


def test_err_op_is_largest_absolute_eigenvalue() -> None:
    """A negative-dominated error: ‖E‖₂ must be |λ_min|, not λ_max."""
    e = np.diag([0.5, -2.0, 1.0])
    m = ntksim.concentration(jnp.asarray(np.eye(3) + e), jnp.asarray(np.eye(3)))
    assert m["err_op"] == pytest.approx(2.0, rel=1e-6)


def test_batched_and_shape_errors() -> None:
    rng = np.random.default_rng(1)
    kinf = jnp.asarray(_sym(rng, 4) + 8 * np.eye(4))
    ks = jnp.stack([kinf + 0.01 * i * jnp.eye(4) for i in range(3)])
    m = ntksim.concentration(ks, kinf)
    np.testing.assert_allclose(m["err_op"], [0.0, 0.01, 0.02], atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        ntksim.concentration(jnp.zeros((3, 3)), kinf)
