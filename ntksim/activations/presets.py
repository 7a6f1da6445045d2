"""Any activation φ: the `Elementwise` type, the presets of science.md, and a user's JAX function.

Every activation (the family's `Activation` too) offers the same interface: `φ(s)`,
`φ.derivative(s)` (elementwise, any shape), `kinks` (where φ or φ' is not smooth), `degree`
(a polynomial's degree, else None), `is_polynomial`, `parity` ('even', 'odd' or None), `name`
and `params`. Limits of φ without a closed form go through the kink-split quadrature of
`ntksim.activations.gaussian`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import erf

# SELU's constants (Klambauer et al. 2017), as in jax.nn.selu.
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


@dataclass(frozen=True)
class Elementwise:
    """An elementwise activation φ with its derivative, kinks, polynomial degree and parity.

    `fn(s, **params)` and `dfn(s, **params)` are module-level functions for presets (so that two
    equal presets compare and hash equal, e.g. as static jit arguments), or a user's function of
    s alone with `dfn=None` (φ' by autodiff). Hashable and immutable.
    """

    name: str
    fn: Callable[..., Array]
    dfn: Callable[..., Array] | None = None
    kinks: tuple[float, ...] = ()
    degree: int | None = None
    parity: str | None = None
    param_items: tuple[tuple[str, Any], ...] = ()  # keyword arguments of fn and dfn
    shown: tuple[tuple[str, Any], ...] | None = field(default=None, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        """The preset's parameters as a user gives them (e.g. {'degree': 3} for a monomial)."""
        return dict(self.param_items if self.shown is None else self.shown)

    @property
    def is_polynomial(self) -> bool:
        return self.degree is not None

    def __call__(self, s: Array) -> Array:
        """φ elementwise; any shape."""
        return self.fn(s, **dict(self.param_items))

    def derivative(self, s: Array) -> Array:
        """φ' elementwise (by autodiff for a user's φ; at a kink, one of the one-sided values)."""
        if self.dfn is not None:
            return self.dfn(s, **dict(self.param_items))
        s = jnp.asarray(s)
        flat = jax.vmap(jax.grad(lambda t: self.fn(t, **dict(self.param_items))))(s.reshape(-1))
        return flat.reshape(s.shape)


# --- preset functions (module level: equal presets are equal objects) -------------------------
def _tanh(s: Array) -> Array:
    return jnp.tanh(s)


def _dtanh(s: Array) -> Array:
    return 1 - jnp.tanh(s) ** 2


def _erf(s: Array) -> Array:
    return erf(s)


def _derf(s: Array) -> Array:
    return (2 / math.sqrt(math.pi)) * jnp.exp(-(s**2))


def _sigmoid(s: Array) -> Array:
    return jax.nn.sigmoid(s)


def _dsigmoid(s: Array) -> Array:
    p = jax.nn.sigmoid(s)
    return p * (1 - p)


def _elu(s: Array, alpha: float) -> Array:
    return jnp.where(s > 0, s, alpha * jnp.expm1(jnp.minimum(s, 0)))


def _delu(s: Array, alpha: float) -> Array:
    return jnp.where(s > 0, 1.0, alpha * jnp.exp(jnp.minimum(s, 0)))


def _selu(s: Array) -> Array:
    return SELU_LAMBDA * _elu(s, SELU_ALPHA)


def _dselu(s: Array) -> Array:
    return SELU_LAMBDA * _delu(s, SELU_ALPHA)


def _gelu(s: Array) -> Array:
    return 0.5 * s * (1 + erf(s / math.sqrt(2)))


def _dgelu(s: Array) -> Array:
    return 0.5 * (1 + erf(s / math.sqrt(2))) + s * jnp.exp(-0.5 * s**2) / math.sqrt(2 * math.pi)


def _silu(s: Array) -> Array:
    return s * jax.nn.sigmoid(s)


def _dsilu(s: Array) -> Array:
    p = jax.nn.sigmoid(s)
    return p * (1 + s * (1 - p))


def _softplus(s: Array) -> Array:
    return jax.nn.softplus(s)


def _sin(s: Array) -> Array:
    return jnp.sin(s)


def _dsin(s: Array) -> Array:
    return jnp.cos(s)


def _rectified_monomial(s: Array, degree: int) -> Array:
    return jnp.maximum(s, 0) ** degree


def _drectified_monomial(s: Array, degree: int) -> Array:
    if degree == 1:
        return jnp.where(s > 0, 1.0, 0.0).astype(jnp.result_type(s, float))
    return degree * jnp.maximum(s, 0) ** (degree - 1)


def _polynomial(s: Array, coefficients: tuple[float, ...]) -> Array:
    """Σ_i c_i s^i by Horner's rule."""
    out = jnp.zeros_like(s) + coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = out * s + c
    return out


def _dpolynomial(s: Array, coefficients: tuple[float, ...]) -> Array:
    slopes = tuple(i * c for i, c in enumerate(coefficients))[1:] or (0.0,)
    return _polynomial(s, slopes)


# --- constructors of the presets with parameters ----------------------------------------------
MAX_DEGREE = 32  # E[Z^{2p}] = (2p−1)!!: beyond this the kernels leave float64 within a layer or two


def _check_degree(name: str, degree: Any, minimum: int) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < minimum:
        raise ValueError(f"activation {name!r}: degree must be an integer ≥ {minimum}, got {degree!r}")
    if degree > MAX_DEGREE:
        raise ValueError(f"activation {name!r}: degree {degree} is above {MAX_DEGREE}, where its Gaussian "
                         "moments (2p−1)!! and the kernels leave floating point")  # fmt: skip
    return int(degree)


def _poly_parity(coefficients: tuple[float, ...]) -> str | None:
    odd = any(c != 0 for c in coefficients[1::2])
    even = any(c != 0 for c in coefficients[0::2])
    return "odd" if odd and not even else "even" if even and not odd else None


def polynomial(coefficients: Any, name: str | None = None) -> Elementwise:
    """φ(s) = Σ_i c_i s^i from (c_0, c_1, …); trailing zeros are dropped."""
    try:
        coeffs = [float(c) for c in coefficients]
    except (TypeError, ValueError):
        raise ValueError(f"activation 'polynomial': coefficients must be a list of numbers, "
                         f"got {coefficients!r}") from None  # fmt: skip
    if not all(math.isfinite(c) for c in coeffs):
        raise ValueError("activation 'polynomial': coefficients must be finite")
    while coeffs and coeffs[-1] == 0.0:
        coeffs.pop()
    if len(coeffs) < 2:
        raise ValueError("activation 'polynomial': needs a non-zero coefficient of degree ≥ 1")
    if len(coeffs) - 1 > MAX_DEGREE:
        raise ValueError(f"activation 'polynomial': degree {len(coeffs) - 1} is above {MAX_DEGREE}, where "
                         "its Gaussian moments and the kernels leave floating point")  # fmt: skip
    coeffs_t = tuple(coeffs)
    label = name or "polynomial(" + ",".join(f"{c:g}" for c in coeffs_t) + ")"
    return Elementwise(label, _polynomial, _dpolynomial, (), len(coeffs_t) - 1, _poly_parity(coeffs_t),
                       (("coefficients", coeffs_t),))  # fmt: skip


def monomial(degree: int = 2) -> Elementwise:
    """φ(s) = s^degree."""
    degree = _check_degree("monomial", degree, 1)
    return _as(polynomial((0.0,) * degree + (1.0,)), f"monomial({degree})", ("degree", degree))


def hermite(degree: int = 2) -> Elementwise:
    """φ = He_degree, the probabilists' Hermite polynomial (E[He_j(Z) He_k(Z)] = k!·δ_jk)."""
    degree = _check_degree("hermite", degree, 1)
    coefficients = np.polynomial.hermite_e.herme2poly([0.0] * degree + [1.0])
    return _as(polynomial(coefficients), f"hermite({degree})", ("degree", degree))


def _as(act: Elementwise, name: str, public: tuple[str, Any]) -> Elementwise:
    """A polynomial preset shown under its own name and parameter (same numbers)."""
    return Elementwise(name, act.fn, act.dfn, act.kinks, act.degree, act.parity, act.param_items, (public,))


def rectified_monomial(degree: int = 2) -> Elementwise:
    """φ(s) = max(s, 0)^degree (degree 1 is ReLU, without the family's closed form)."""
    degree = _check_degree("rectified_monomial", degree, 1)
    return Elementwise(f"rectified_monomial({degree})", _rectified_monomial, _drectified_monomial, (0.0,),
                       None, None, (("degree", degree),))  # fmt: skip


def elu(alpha: float = 1.0) -> Elementwise:
    """φ(s) = s for s > 0, α(eˢ − 1) otherwise. Kink at 0 (φ' jumps unless α = 1, then φ'')."""
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"activation 'elu': alpha must be a positive number, got {alpha}")
    return Elementwise(f"elu({alpha:g})", _elu, _delu, (0.0,), None, None, (("alpha", alpha),))


def _fixed(name: str, fn: Callable, dfn: Callable, kinks: tuple = (), parity: str | None = None) -> Callable:
    def make() -> Elementwise:
        return Elementwise(name, fn, dfn, kinks, None, parity)

    make.__doc__ = f"The {name} activation."
    return make


def _dsoftplus(s: Array) -> Array:
    return jax.nn.sigmoid(s)


# name → constructor taking the preset's keyword parameters (the family presets live in family.py)
PRESETS: dict[str, Callable[..., Elementwise]] = {
    "tanh": _fixed("tanh", _tanh, _dtanh, parity="odd"),
    "erf": _fixed("erf", _erf, _derf, parity="odd"),
    "sigmoid": _fixed("sigmoid", _sigmoid, _dsigmoid),
    "elu": elu,
    "selu": _fixed("selu", _selu, _dselu, kinks=(0.0,)),
    "gelu": _fixed("gelu", _gelu, _dgelu),
    "silu": _fixed("silu", _silu, _dsilu),
    "softplus": _fixed("softplus", _softplus, _dsoftplus),
    "sin": _fixed("sin", _sin, _dsin, parity="odd"),
    "monomial": monomial,
    "rectified_monomial": rectified_monomial,
    "hermite": hermite,
    "polynomial": polynomial,
}
PRESETS["swish"] = PRESETS["silu"]


def user_activation(
    fn: Callable[[Array], Array],
    name: str | None = None,
    kinks: tuple[float, ...] | list[float] = (),
    derivative: Callable[[Array], Array] | None = None,
    parity: str | None = None,
    degree: int | None = None,
) -> Elementwise:
    """A user's JAX-traceable elementwise φ; φ' by autodiff unless `derivative` is given.

    Checked at once: it must trace on a float array and return the same shape.
    """
    label: str = name or getattr(fn, "__name__", None) or "user"
    if not callable(fn):
        raise ValueError(f"activation {label!r}: expected a function of one array, got {type(fn).__name__}")
    if parity not in (None, "even", "odd"):
        raise ValueError(f"activation {label!r}: parity must be 'even', 'odd' or None, got {parity!r}")
    probe = jax.ShapeDtypeStruct((3,), jnp.float32)
    try:
        out = jax.eval_shape(fn, probe)
    except Exception as err:  # any tracing failure is the user's φ, not ours
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"activation {label!r}: not a JAX-traceable function ({first})") from None
    if getattr(out, "shape", None) != (3,):
        raise ValueError(f"activation {label!r}: must map an array elementwise (shape (3,) gave "
                         f"{getattr(out, 'shape', type(out).__name__)})")  # fmt: skip
    kinks_t = tuple(sorted(float(k) for k in kinks))

    def wrap(f: Callable | None) -> Callable | None:
        return None if f is None else _UserFn(f)

    return Elementwise(label, _UserFn(fn), wrap(derivative), kinks_t, degree, parity)


@dataclass(frozen=True)
class _UserFn:
    """A user's function called as fn(s) (no parameters); compares by the function's identity."""

    fn: Callable[[Array], Array]

    def __call__(self, s: Array) -> Array:
        return self.fn(s)
