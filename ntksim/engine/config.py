"""Run configuration: YAML → validated, typed, plain data, for any study.

The models know no study: `ntksim.engine.loading` reads a file, applies overrides and picks the
study's model. Every mistake surfaces as a `ConfigError` whose message is one line naming the key path, e.g.
`widths.1: must be greater than 0`. Unknown keys are errors. The engine's keys (`name`, `study`,
`launcher`) live in `RunConfig`; each study's model extends it with its own section and is
chosen by the `study:` key (default `concentration`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PositiveInt = Annotated[int, Field(gt=0, strict=True)]


StrictFloat = Annotated[float, Field(strict=True)]  # accepts YAML ints, rejects true and "1.5"


StrictInt = Annotated[int, Field(strict=True)]


MAX_SEED = 2**31 - 1  # PRNGKey seeds must fit in 32 bits


DEFAULT_STUDY = "concentration"


# Keys that change how or where a run goes, not its numbers: left out of the run's hash.
UNHASHED_KEYS = ("name", "launcher")


class ConfigError(ValueError):
    """A user mistake in a config file or a --set override; the message is one line."""


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# sbatch options the launcher names itself (or submitit sets): not accepted in `sbatch:`
NAMED_SBATCH_KEYS = frozenset(
    {"partition", "account", "qos", "time", "gpus_per_node", "cpus_per_task", "mem", "constraint", "job_name",
     "array", "nodes", "ntasks_per_node", "output", "error", "open_mode", "signal", "wrap"}
)  # fmt: skip


class LauncherConfig(Strict):
    """Where cells run when `--executor` is local, debug or slurm (submitit).

    Cells are grouped about `cells_per_task` to an array task: packed by the study's cost estimate
    where it makes one (largest first onto the least loaded task, with no more tasks than keep the
    slowest within 1.5 × the mean), else in config order. SLURM keys map to sbatch options;
    `sbatch:` passes any other option through unchanged.
    """

    @field_validator("sbatch")
    @classmethod
    def _sbatch_names(cls, value: dict) -> dict:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
                raise ValueError(f"{name!r} is not an sbatch option name (lower case, e.g. gres, exclusive)")
            if name.replace("-", "_") in NAMED_SBATCH_KEYS:
                raise ValueError(f"{name!r} has its own launcher key; set it there")
        return value

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
    device_mem_gb: Annotated[float, Field(gt=0, strict=True)] | None = Field(
        default=None,
        description="memory of one device (GPU) on the nodes, for the check before submission that "
        "every cell fits; default: mem_gb where tasks run on CPUs, unknown with GPUs",
    )
    constraint: str | None = None
    setup: list[str] = Field(default_factory=list, description="shell lines run before each task")
    sbatch: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="any other sbatch option, name → value (e.g. gres: 'gpu:a100:1', exclusive: true); "
        "true writes the bare flag",
    )
    max_requeue: Annotated[int, Field(ge=0, strict=True)] = 3


class RunConfig(Strict):
    """The keys every study has; a study's config extends it (and narrows `study` to its name)."""

    name: str = "ntksim"
    study: str = DEFAULT_STUDY
    launcher: LauncherConfig = LauncherConfig()

    def check_installation(self) -> None:
        """Raise ConfigError where this config needs what is not installed (neural-tangents
        outside the reference profile); run once when a config is loaded, not for a stored one."""


def as_list(value: Any) -> Any:
    """A before-validator: a scalar where a list is expected becomes a one-element list."""
    return [value] if isinstance(value, int | float | str | dict) else value


def hashed(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides the numbers: without name and launcher, and
    without `study` at its default, so configs written before studies existed hash alike."""
    out = {k: v for k, v in resolved.items() if k not in UNHASHED_KEYS}
    if out.get("study") == DEFAULT_STUDY:
        del out["study"]
    return out


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_LEADING_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$")


def _key_path(loc: tuple) -> list[str]:
    """Config key path of a pydantic error location, without pydantic's union-member tags
    (such as 'constrained-int' or "literal['quadratic','constant']")."""
    return [str(p) for p in loc if isinstance(p, int) or _KEY.match(str(p))]


def _number_read_as_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return "e" in value.lower() and value.strip().lower() not in ("inf", "nan", "-inf", "+inf")


def _with_dot(text: str) -> str:
    mantissa, _, exponent = text.lower().partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"


def format_error(err: ValidationError) -> str:
    errors = err.errors()
    # A misspelt key shows up twice: as unknown, and as the key it should have been "missing".
    # Name the unknown one, which says what to fix.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
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
    elif _number_read_as_text(first.get("input")):
        # YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants a dot in the mantissa
        text = first["input"]
        message = f"{text!r} was read as text, not a number (YAML needs a dot: write {_with_dot(text)})"
    # Each member of a union reports separately; count distinct key paths only.
    more = len({tuple(_key_path(e["loc"])) for e in errors}) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{'.'.join(path) or 'config'}: {message}{suffix}"


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
