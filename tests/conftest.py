"""Shared test setup.

The suite runs twice (see Makefile): with JAX's default float32 and with JAX_ENABLE_X64=1.
Numeric tests read `tol` to use tolerances that fit the active dtype.
"""

from __future__ import annotations

import jax
import pytest

# Implicit rank promotion hides shape bugs; make it an error everywhere (as equinox does).
jax.config.update("jax_numpy_rank_promotion", "raise")

X64 = bool(jax.config.jax_enable_x64)


class Tolerance:
    """rtol/atol for comparisons between two computations of the same quantity."""

    def __init__(self, x64: bool) -> None:
        self.x64 = x64
        self.rtol = 1e-10 if x64 else 2e-4
        self.atol = 1e-12 if x64 else 1e-5


@pytest.fixture
def tol() -> Tolerance:
    return Tolerance(X64)


@pytest.fixture
def x64() -> bool:
    return X64
