"""Activations: the family φ(s) = a·s + b·|s| with its closed forms, every preset of science.md,
and a user's JAX function — one interface (φ, φ', kinks, degree, parity) for all of them.

    ntksim.activation("relu")                      # family presets give ntksim.Activation
    ntksim.activation("elu", alpha=0.5)            # or "elu(0.5)"
    ntksim.activation("monomial", degree=3)        # or "monomial(3)"
    ntksim.activation(fn, name="mine", kinks=(0.0,))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ntksim.activations.family import PRESETS as FAMILY_PRESETS
from ntksim.activations.family import Activation
from ntksim.activations.presets import PRESETS, Elementwise, user_activation

AnyActivation = Activation | Elementwise

# One-parameter presets may be written "name(value)"; the value is that parameter.
_CALL = re.compile(r"^([a-z_]+)\(\s*([^)]*?)\s*\)$")
_SINGLE_PARAMETER = {"leaky_relu": "alpha", "elu": "alpha", "monomial": "degree",
                     "rectified_monomial": "degree", "hermite": "degree"}  # fmt: skip
PARAMETERS: dict[str, tuple[str, ...]] = {
    **{name: () for name in (*FAMILY_PRESETS, *PRESETS)},
    "leaky_relu": ("alpha",),
    "elu": ("alpha",),
    "monomial": ("degree",),
    "rectified_monomial": ("degree",),
    "hermite": ("degree",),
    "polynomial": ("coefficients",),
}
NAMES: tuple[str, ...] = tuple(PARAMETERS)


def _parse_number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)


def activation(spec: str | Callable, /, name: str | None = None, **params: Any) -> AnyActivation:
    """An activation by preset name with keyword parameters, or from a user's JAX function.

    Family names (relu, abs, linear, leaky_relu) give `ntksim.Activation` (with Δ_φ, κ_φ);
    others an `Elementwise`. A function: `activation(fn, name=..., kinks=..., derivative=...,
    parity=..., degree=...)`. ValueError (one line) for an unknown name or parameter.
    """
    if callable(spec) and not isinstance(spec, str):
        return user_activation(spec, name=name, **params)
    if not isinstance(spec, str):
        raise ValueError(f"activation: expected a preset name or a function, got {type(spec).__name__}")
    text = spec.strip()
    match = _CALL.match(text)
    if match and match.group(1) in _SINGLE_PARAMETER:
        key = _SINGLE_PARAMETER[match.group(1)]
        if key in params:
            raise ValueError(f"activation {text!r}: {key} given twice")
        try:
            params[key] = _parse_number(match.group(2))
        except ValueError:
            raise ValueError(f"activation {text!r}: {key} must be a number, got {match.group(2)!r}") from None
        text = match.group(1)
    if text not in PARAMETERS:
        raise ValueError(f"unknown activation {text!r}; choose one of {', '.join(NAMES)}")
    unknown = sorted(set(params) - set(PARAMETERS[text]))
    if unknown:
        takes = ", ".join(PARAMETERS[text]) or "no parameters"
        raise ValueError(f"activation {text!r}: unknown parameter {unknown[0]!r} (takes {takes})")
    if text == "polynomial" and "coefficients" not in params:
        raise ValueError("activation 'polynomial': give its coefficients (c_0, c_1, …)")
    if text in FAMILY_PRESETS:
        act = Activation.preset(text, **params)
        return Activation(act.a, act.b, name) if name else act
    made = PRESETS[text](**params)
    if name:
        return Elementwise(
            name, made.fn, made.dfn, made.kinks, made.degree, made.parity, made.param_items, made.shown
        )
    return made


__all__ = ["NAMES", "PARAMETERS", "Activation", "AnyActivation", "Elementwise", "activation"]
