"""Concentration metrics of E = K(θ) − K∞ (science.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

METRICS: tuple[str, ...] = ("err_op", "err_fro", "err_max", "rel_op", "kinf_op")


def _spectral(sym: Array) -> Array:
    """‖A‖₂ of a symmetric A (…, N, N) = max |eigenvalue|."""
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(sym)), axis=-1)


@jax.jit
def concentration_arrays(k: Array, kinf: Array) -> dict[str, Array]:
    """Metrics for K of shape (…, N, N) against K∞ of shape (N, N), computed in K∞'s dtype.

    K is symmetric in exact arithmetic; it is symmetrized so round-off cannot leak into the
    eigenvalues.
    """
    k = k.astype(kinf.dtype)
    err = k - jnp.broadcast_to(kinf, k.shape)
    err = 0.5 * (err + jnp.swapaxes(err, -1, -2))
    err_op = _spectral(err)
    kinf_op = _spectral(0.5 * (kinf + kinf.T))
    return {
        "err_op": err_op,
        "err_fro": jnp.sqrt(jnp.sum(err**2, axis=(-2, -1))),
        "err_max": jnp.max(jnp.abs(err), axis=(-2, -1)),
        "rel_op": err_op / kinf_op,
        "kinf_op": jnp.broadcast_to(kinf_op, err_op.shape),
    }


def concentration(k: Array, kinf: Array) -> dict[str, float | np.ndarray]:
    """{"err_op", "err_fro", "err_max", "rel_op", "kinf_op"} of E = K − K∞.

    err_op = ‖E‖₂, err_fro = ‖E‖_F, err_max = max|E_ij|, rel_op = err_op/‖K∞‖₂, kinf_op = ‖K∞‖₂.
    K: (N, N) gives floats; K: (S, N, N) gives arrays of length S.
    """
    k, kinf = jnp.asarray(k), jnp.asarray(kinf)
    if kinf.ndim != 2 or kinf.shape[0] != kinf.shape[1] or k.shape[-2:] != kinf.shape:
        raise ValueError(f"K of shape {k.shape} does not match K∞ of shape {kinf.shape}")
    out = {name: np.asarray(v) for name, v in concentration_arrays(k, kinf).items()}
    if k.ndim == 2:
        return {name: float(v) for name, v in out.items()}
    return dict(out)


def gram_spectrum(gram: np.ndarray, floor_factor: float = 10.0) -> dict[str, float]:
    """λ_min, λ_max, the floating-point floor, whether λ_min is at it, and the numerical rank
    of a symmetric PSD Gram matrix (n, n).

    floor = floor_factor · n · eps · ‖K‖₂ (eps of the matrix dtype): eigenvalues of |λ| at or
    below it are indistinguishable from 0 (round-off of the entries and of eigvalsh itself), so
    `at_floor` says λ_min carries no information beyond "≤ floor", and `rank` counts the
    eigenvalues above it (numpy.linalg.matrix_rank's tolerance, times floor_factor).
    """
    gram = np.asarray(gram)
    eig = np.linalg.eigvalsh(0.5 * (gram + gram.T))
    n = gram.shape[0]
    top = float(np.max(np.abs(eig)))
    floor = floor_factor * n * float(np.finfo(gram.dtype).eps) * top
    lam_min = float(eig[0])
    return {
        "lambda_min": lam_min,
        "lambda_max": float(eig[-1]),
        "floor": floor,
        "at_floor": bool(lam_min <= floor),
        "rank": int(np.sum(eig > floor)),
    }
