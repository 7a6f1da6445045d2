"""Experiment configuration: YAML → validated, typed, plain data.

Every mistake surfaces as a `ConfigError` whose message is one line naming the key path, e.g.
`widths.1: must be greater than 0`. Unknown keys are errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ntksim.activations import Activation, AnyActivation, activation
from ntksim.widths import hidden_widths

PositiveInt = Annotated[int, Field(gt=0, strict=True)]
StrictFloat = Annotated[float, Field(strict=True)]  # accepts YAML ints, rejects true and "1.5"
StrictInt = Annotated[int, Field(strict=True)]
MAX_SEED = 2**31 - 1  # PRNGKey seeds must fit in 32 bits


class ConfigError(ValueError):
    """A user mistake in a config file or a --set override; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivationSpec(_Strict):
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
        return Activation(self.a, self.b, self.name or "")


class DataConfig(_Strict):
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
    def num_points(self) -> int:
        return self.n if self.n is not None else 32

    @property
    def dimension(self) -> int:
        return self.dim if self.dim is not None else 8


class NTKConfig(_Strict):
    """How the empirical NTK is computed."""

    method: Literal["structured", "jacobian"] = "structured"
    dtype: Literal["float32", "float64"] = "float32"
    chunk: PositiveInt | None = Field(default=None, description="seeds per vmapped batch; auto if null")


class LimitConfig(_Strict):
    """How the infinite-width limit is computed."""

    backend: Literal["auto", "closed_form", "quadrature", "neural_tangents"] = "auto"


class LauncherConfig(_Strict):
    """Where cells run when `--executor` is local, debug or slurm (submitit).

    Cells are grouped `cells_per_task` to an array task. SLURM keys map to sbatch options.
    """

    cells_per_task: PositiveInt = 1
    array_parallelism: PositiveInt = 64
    local_parallelism: PositiveInt = 2
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: PositiveInt = 60
    gpus_per_node: Annotated[int, Field(ge=0, strict=True)] = 0
    cpus_per_task: PositiveInt | None = None
    mem_gb: Annotated[float, Field(gt=0, strict=True)] | None = None
    constraint: str | None = None
    setup: list[str] = Field(default_factory=list, description="shell lines run before each task")
    max_requeue: Annotated[int, Field(ge=0, strict=True)] = 3


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, int | float | str | dict) else value


class Config(_Strict):
    """A sweep over activations × depths × widths × out_dims, each with `seeds` parameter draws."""

    name: str = "ntksim"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[PositiveInt], Field(min_length=1)]
    widths: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    schedule: Literal["quadratic", "constant"] | Annotated[list[PositiveInt], Field(min_length=1)] = (
        "quadratic"
    )
    seeds: PositiveInt = 8
    seed_offset: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 0
    seeds_per_cell: PositiveInt | None = None
    out_dim: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] = 1
    sigma_w: StrictFloat | None = None
    sigma_b: StrictFloat | None = None
    kernel: Literal["ntk", "nngp"] = "ntk"
    data: DataConfig = DataConfig()
    ntk: NTKConfig = NTKConfig()
    limit: LimitConfig = LimitConfig()
    launcher: LauncherConfig = LauncherConfig()

    _listify = field_validator("activations", "depths", "widths", mode="before")(_as_list)

    @field_validator("sigma_w")
    @classmethod
    def _sigma_w(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number (or null for the Edge of Chaos)")
        return value

    @field_validator("sigma_b")
    @classmethod
    def _sigma_b(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError("must be a non-negative number (0 or null: no bias parameters)")
        return value

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.seed_offset + self.seeds - 1 > MAX_SEED:
            raise ValueError(f"seed_offset: seeds must stay below 2^31 (last seed would be "
                             f"{self.seed_offset + self.seeds - 1})")  # fmt: skip
        if isinstance(self.schedule, list):
            if self.widths is not None:
                raise ValueError("widths: must be omitted when schedule is an explicit list of widths")
            for depth in self.depths:
                try:
                    hidden_widths(depth, None, self.schedule)
                except ValueError as err:
                    raise ValueError(f"schedule: {err}") from None
        elif self.widths is None:
            raise ValueError("widths: required key is missing (the base widths m to sweep)")
        if self.limit.backend == "closed_form":
            for i, spec in enumerate(self.activations):
                act = spec.build()
                if not isinstance(act, Activation):
                    raise ValueError(f"limit.backend: closed_form is the family's arc-cosine recursion; "
                                     f"activations.{i} ({act.name}) needs quadrature or auto")  # fmt: skip
        if self.sigma_w is None:  # σ_w from the EOC at σ_b: it must exist for every activation
            from ntksim.activations.eoc import NoEOCPoint, resolve_sigmas

            for i, spec in enumerate(self.activations):
                try:
                    resolve_sigmas(spec.build(), None, self.sigma_b)
                except NoEOCPoint as err:
                    raise ValueError(
                        f"activations.{i}: {err}; give sigma_b where it has one, or sigma_w"
                    ) from None
        return self

    @property
    def out_dims(self) -> list[int]:
        return self.out_dim if isinstance(self.out_dim, list) else [self.out_dim]

    @property
    def width_values(self) -> list[int | None]:
        """The swept m values; [None] for an explicit schedule."""
        return list(self.widths) if self.widths is not None else [None]

    def activation_objects(self) -> list[AnyActivation]:
        return [spec.build() for spec in self.activations]


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$")


def _key_path(loc: tuple) -> list[str]:
    """Config key path of a pydantic error location, without pydantic's union-member tags
    (such as 'constrained-int' or "literal['quadratic','constant']")."""
    return [str(p) for p in loc if isinstance(p, int) or _KEY.match(str(p))]


def _format_error(err: ValidationError) -> str:
    errors = err.errors()
    first = errors[0]
    path = _key_path(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    # Cross-field checks raise "key: message" from a model validator, whose loc is the model.
    leading = _LEADING_KEY.match(message)
    if leading:
        path, message = [*path, *leading.group(1).split(".")], leading.group(2)
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    # Each member of a union reports separately; count distinct key paths only.
    more = len({tuple(_key_path(e["loc"])) for e in errors}) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{'.'.join(path) or 'config'}: {message}{suffix}"


def validate(raw: Any) -> Config:
    """Typed config from a mapping; ConfigError (one line) on any mistake."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML file; ConfigError if unreadable or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (invalid UTF-8)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def _field_exists(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    inner = field.annotation
    return isinstance(inner, type) and issubclass(inner, BaseModel) and _field_exists(inner, parts[1:])


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `KEY=VALUE` overrides (dotted keys, YAML values) to a copy of `raw`."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        parts = key.split(".")
        if not _field_exists(Config, parts):
            raise ConfigError(f"--set {key}: no such config key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML") from None
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[Config, dict[str, Any]]:
    """Validated config and the resolved mapping (with defaults filled in) to write beside results.

    Also checks that this installation can compute it (a stored config is not re-checked, so a
    run made in the reference profile can be inspected from the current one)."""
    config = validate(apply_overrides(read_yaml(path), overrides or []))
    from ntksim.limits import REFERENCE_HINT, neural_tangents_available

    if config.limit.backend == "neural_tangents" and not neural_tangents_available():
        raise ConfigError(
            f"limit.backend: 'neural_tangents' is not installed in this profile; {REFERENCE_HINT}"
        )
    return config, config.model_dump(mode="json", exclude_none=True)
