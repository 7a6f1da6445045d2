"""Config sections and helpers that several studies share: activations, data, the eNTK, the limit.

Also what identifies an activation and a data set in a cell's hash, and loading the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import jax
import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from ntksim.activations import Activation, AnyActivation, Elementwise, activation
from ntksim.data.points import gaussian, load_points, sphere
from ntksim.engine.config import MAX_SEED, ConfigError, PositiveInt, Strict, StrictFloat, StrictInt


class ActivationSpec(Strict):
    """One activation: any preset of `ntksim.activation` with its parameters, or the family's (a, b).

    In YAML: a bare name (`relu`, `tanh`, `leaky_relu(0.1)`, `elu(0.5)`, `monomial(3)`), a mapping
    with the preset's parameters (`{preset: elu, alpha: 0.5}`, `{preset: polynomial,
    coefficients: [0, 1, 0.5]}`), or `{a: 0.5, b: 0.5, name: relu}`.
    """

    preset: str | None = None
    alpha: StrictFloat | None = None
    degree: StrictInt | None = None
    coefficients: list[StrictFloat] | None = None
    a: StrictFloat | None = None
    b: StrictFloat | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"preset": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ActivationSpec:
        if self.preset is not None and (self.a is not None or self.b is not None):
            raise ValueError("give either a preset or a and b, not both")
        if self.preset is None and (self.a is None or self.b is None):
            raise ValueError("give a preset name or both a and b")
        if self.preset is None and self.parameters():
            raise ValueError(f"{next(iter(self.parameters()))} applies only to a preset")
        self.build()  # raises ValueError on unknown names or parameters, a = b = 0, bad values
        return self

    def parameters(self) -> dict[str, Any]:
        values = {"alpha": self.alpha, "degree": self.degree, "coefficients": self.coefficients}
        return {k: v for k, v in values.items() if v is not None}

    def build(self) -> AnyActivation:
        if self.preset is not None:
            return activation(self.preset, name=self.name, **self.parameters())
        assert self.a is not None and self.b is not None  # _check: a and b both, without a preset
        return Activation(self.a, self.b, self.name or "")


class DataConfig(Strict):
    """Inputs: `sphere` (radius √dim), `gaussian` (N(0, I)), or `file` (.npy/.npz, no pickle)."""

    kind: Literal["sphere", "gaussian", "file"] = "sphere"
    n: PositiveInt | None = None
    dim: PositiveInt | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 0
    path: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("path: required when kind is 'file'")
        if self.kind != "file" and (self.path is not None or self.key is not None):
            raise ValueError(f"path: applies only to kind 'file', not {self.kind!r}")
        return self

    @property
    def file_path(self) -> str:
        """The data file (kind "file", where `_check` makes it required)."""
        return required_path(self.path)

    @property
    def num_points(self) -> int:
        return self.n if self.n is not None else 32

    @property
    def dimension(self) -> int:
        return self.dim if self.dim is not None else 8


class NTKConfig(Strict):
    """How the empirical NTK is computed."""

    method: Literal["structured", "jacobian"] = "structured"
    dtype: Literal["float32", "float64"] = "float32"
    chunk: PositiveInt | None = Field(default=None, description="seeds per vmapped batch; auto if null")
    traced: bool | None = Field(
        default=None,
        description="one compilation per array shape, with the family's (a, b), σ_w and σ_b traced "
        "arguments, each cell computed alone; the numbers then differ from the default's in the last "
        "bits, because XLA folds constant scalars into neighbouring products and a traced one it "
        "cannot; null or false: the cells of one parameter draw (the activations at one depth and "
        "width) computed together in one program, bit-identical to earlier runs, and faster",
    )
    fast_compile: bool | None = Field(
        default=None,
        description="on a CPU, compile the eNTK programs with XLA's quicker options (its elemental "
        "emitters, LLVM -O1): ~40% less compile time, compute a few percent slower; the numbers "
        "equal the default's to round-off, bit for bit for the family φ without biases in float32 "
        "with the structured method on one CPU device (tested; the shipped CPU configs) but not in "
        "general "
        "(GELU's move in the last bits); no effect on accelerators; null or false: XLA's "
        "defaults",
    )

    @field_validator("fast_compile")
    @classmethod
    def _off_is_absent(cls, value: bool | None) -> bool | None:
        # off is the default, left out of the resolved config: a run made before the key existed
        # (or with it off) resumes with `--set ntk.fast_compile=false` as well as without it
        return value or None


class LimitConfig(Strict):
    """How the infinite-width limit is computed."""

    backend: Literal["auto", "closed_form", "quadrature", "neural_tangents"] = "auto"


def check_sigma_w(value: float | None) -> float | None:
    """σ_w: a positive number, or None for the Edge of Chaos."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError("must be a positive number (or null for the Edge of Chaos)")
    return value


def check_sigma_b(value: float | None) -> float | None:
    """σ_b: a non-negative number; 0 or None means no bias parameters."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError("must be a non-negative number (0 or null: no bias parameters)")
    return value


def check_eoc_exists(activations: Sequence[ActivationSpec], sigma_bs: Sequence[float | None]) -> None:
    """With σ_w from the EOC, every activation needs an EOC point at every σ_b; ValueError
    naming the activation otherwise."""
    from ntksim.activations.eoc import NoEOCPoint, resolve_sigmas

    for i, spec in enumerate(activations):
        for sigma_b in sigma_bs:
            try:
                resolve_sigmas(spec.build(), None, sigma_b)
            except NoEOCPoint as err:
                raise ValueError(
                    f"activations.{i}: {err}; give sigma_b where it has one, or sigma_w"
                ) from None


def check_backend(activations: list[ActivationSpec], backend: str) -> None:
    """closed_form is the family's recursion only."""
    if backend != "closed_form":
        return
    for i, spec in enumerate(activations):
        act = spec.build()
        if not isinstance(act, Activation):
            raise ValueError(f"limit.backend: closed_form is the family's arc-cosine recursion; "
                             f"activations.{i} ({act.name}) needs quadrature or auto")  # fmt: skip


def check_limit_installed(limit: LimitConfig) -> None:
    """ConfigError when the config asks for neural-tangents and this profile lacks it."""
    from ntksim.kernels.limits import REFERENCE_HINT, neural_tangents_available

    if limit.backend == "neural_tangents" and not neural_tangents_available():
        raise ConfigError(
            f"limit.backend: 'neural_tangents' is not installed in this profile; {REFERENCE_HINT}"
        )


def activation_identity(act: AnyActivation) -> dict[str, Any]:
    """What identifies an activation in a cell's hash: the family's (a, b), or a preset's name,
    parameters, function and kinks (two presets renamed alike must not share cells)."""
    if isinstance(act, Activation):
        return {"a": act.a, "b": act.b, "name": act.name}
    fn = getattr(act.fn, "__name__", None) or getattr(getattr(act.fn, "fn", None), "__name__", "user")
    return {"name": act.name, "params": act.params, "fn": fn, "kinks": list(act.kinks)}


MAPPING_FIELDS = ("data", "setting")  # cell fields held as ((key, value), ...) tuples


def _jsonable(value: Any, mapping: bool = False) -> Any:
    if mapping:
        return None if value is None else {k: _jsonable(v) for k, v in value}
    if isinstance(value, (Activation, Elementwise)):
        return activation_identity(value)
    if hasattr(value, "cell_id"):  # a cell inside a cell: by its own id
        return value.cell_id
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def cell_content(
    cell: Any, study: str, omit_at: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """What a cell's id hashes: {"study": study}, every field of the (frozen dataclass) cell made
    JSON-able — an activation by `activation_identity`, a nested cell by its id, a config section
    by its dump, the (key, value) tuples of MAPPING_FIELDS as mappings, other tuples as lists —
    and the `extra` entries (e.g. part="limit"). omit_at: fields left out while they hold these
    values — a setting added to a study later, at its default, so that older run directories keep
    their ids."""
    content: dict[str, Any] = {"study": study}
    for f in dataclasses.fields(cell):
        value = getattr(cell, f.name)
        if omit_at and f.name in omit_at and value == omit_at[f.name]:
            continue
        content[f.name] = _jsonable(value, f.name in MAPPING_FIELDS)
    return content | extra


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def required_path(path: str | None) -> str:
    """A data config's `path` where its kind is "file" (its validator requires one there)."""
    if path is None:
        raise ConfigError("data.path: required when kind is 'file'")
    return path


def data_identity(data: DataConfig) -> tuple[tuple[str, Any], ...]:
    """What identifies the inputs: the generator settings, or the file's content hash."""
    if data.kind == "file":
        try:
            return (("kind", "file"), ("sha256", file_digest(data.file_path)), ("key", data.key))
        except OSError as err:
            raise ConfigError(f"data.path: cannot read {data.path} ({err.strerror})") from None
    return (("kind", data.kind), ("n", data.num_points), ("dim", data.dimension), ("seed", data.seed))


def load_data(data: DataConfig, n: int | None = None) -> np.ndarray:
    """The inputs x, float64 (n, dim); ConfigError on a bad data file. n: points of a generator
    (default data.n); the first n of a larger draw are not the same points."""
    if data.kind == "file":
        try:
            x = load_points(data.file_path, data.key)
        except ValueError as err:
            raise ConfigError(f"data.path: {err}") from None
        for name, want, got in (("n", data.n, x.shape[0]), ("dim", data.dim, x.shape[1])):
            if want is not None and want != got:
                raise ConfigError(f"data.{name}: is {want} but the file has {got}")
        return x
    key = jax.random.PRNGKey(data.seed)
    make = sphere if data.kind == "sphere" else gaussian
    return np.asarray(make(key, n or data.num_points, data.dimension), dtype=np.float64)


SigmaWChoice = StrictFloat | dict[str, StrictFloat] | None


def sigma_w_for(sigma_w: SigmaWChoice, name: str) -> float | None:
    """σ_w of one activation (by its name) under a `SigmaWChoice`: None means its EOC. Mapping keys
    are read as activations, so `elu` names `elu(1)`."""
    if not isinstance(sigma_w, dict):
        return sigma_w
    return {activation(key).name: value for key, value in sigma_w.items()}.get(name)


def check_sigma_w_choice(
    sigma_w: SigmaWChoice, activations: list[ActivationSpec], sigma_bs: list[float]
) -> None:
    """σ_w given as null (the EOC), one number, or a mapping from activation names to numbers (the
    others at their EOC): every number positive; every name in the mapping a valid activation (one
    not in the list is ignored, so `--set activations=…` keeps the config usable); every φ left to
    the EOC must have one at every σ_b."""
    if isinstance(sigma_w, dict):
        for name, value in sigma_w.items():
            try:
                activation(name)
            except ValueError as err:
                raise ValueError(f"sigma_w: {name!r} is not an activation name ({err})") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"sigma_w: {name!r} must be a positive number, got {value}")
    elif sigma_w is not None and not (math.isfinite(sigma_w) and sigma_w > 0):
        raise ValueError(
            "sigma_w: must be a positive number, a mapping of activation names to them, or null (EOC)"
        )
    at_eoc = [spec for spec in activations if sigma_w_for(sigma_w, spec.build().name) is None]
    check_eoc_exists(at_eoc, sigma_bs)
