"""Training dynamics: finite networks trained with optax against their linearisation and the
infinite-width prediction (science.md, "Training dynamics"; Jacot et al. 2018, Lee et al. 2019).

One cell per (activation, σ_b, depth, width, optimizer): `seeds` networks trained together in
one compiled loop (`ntksim.nets.dynamics.train_seeds`), observed at log-spaced steps. Rows: one per
seed and observation step, with the train/test loss of the network, of its linearisation around
its own θ₀ and of the limit (the kernel's linear dynamics with K∞, started from the network's
own f₀), the test-set distances ‖f_t − f_t^lin‖ and ‖f_t − f_t^∞‖ (root mean square over test
points), the NTK drift ‖K(θ_t) − K(θ₀)‖₂/‖K(θ₀)‖₂ on the training inputs and the relative
parameter movement ‖θ_t − θ₀‖/‖θ₀‖.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ntksim.activations import AnyActivation
from ntksim.activations.eoc import resolve_sigmas
from ntksim.analysis.fit import fit_rate, slope_text
from ntksim.analysis.tables import markdown_table
from ntksim.data.points import load_points, sphere
from ntksim.engine.cells import content_id
from ntksim.engine.config import MAX_SEED, ConfigError, PositiveInt, RunConfig, Strict, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.limits import limit_kernels
from ntksim.nets.dynamics import (
    limit_gradient_descent,
    limit_momentum,
    make_optimizer,
    mse,
    observation_steps,
    optimizer_parameters,
    rms,
    train_seeds,
)
from ntksim.nets.empirical import bytes_per_seed
from ntksim.nets.model import MLP, sample_widths
from ntksim.studies._costs import FLOP_RATE, compile_bytes, compile_seconds, forward_flops
from ntksim.studies._sections import (
    ActivationSpec,
    SigmaWChoice,
    cell_content,
    check_sigma_w_choice,
    file_digest,
    required_path,
    sigma_w_for,
)

COLUMNS = (
    "activation",
    "depth",
    "width",
    "widths",
    "schedule",
    "sigma_w",
    "sigma_b",
    "optimizer",
    "learning_rate",
    "lr_relative",
    "n_train",
    "n_test",
    "in_dim",
    "seed",
    "step",
    "train_loss",
    "test_loss",
    "lin_train_loss",
    "lin_test_loss",
    "limit_train_loss",
    "limit_test_loss",
    "diff_lin",
    "diff_limit",
    "drift",
    "movement",
    "k0_ratio",
)
SigmaB = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class OptimizerConfig(Strict):
    """An optax optimizer by name with its keyword parameters. learning_rate is absolute, or
    (relative: true, the default) a fraction of 2/λ_max of the limit K∞ on the training inputs,
    the largest stable step of gradient descent."""

    name: str = "sgd"
    learning_rate: Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)] = 0.5
    relative: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        try:
            known = optimizer_parameters(self.name)
        except ValueError as err:
            raise ValueError(f"name: {err}") from None
        for key in self.params:
            if key not in known:
                raise ValueError(
                    f"params.{key}: not a parameter of optax.{self.name} (it takes {', '.join(known)})"
                )
        for key, value in self.params.items():  # say what a value should be before optax says it its way
            expected = _expected_kind(self.name, key)
            if expected == "a number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"params.{key}: optax.{self.name}'s {key} is a number, got {value!r}")
            if expected == "true or false" and not isinstance(value, bool):
                raise ValueError(f"params.{key}: optax.{self.name}'s {key} is true or false, got {value!r}")
        try:  # other wrong values fail here, not inside a cell
            probe = {"w": np.zeros(2)}
            optimizer = make_optimizer(self.name, 1e-3, self.params)
            optimizer.update(probe, optimizer.init(probe), probe)
        except Exception as err:  # optax raises many kinds on bad values
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"params: optax.{self.name} cannot use them ({message})") from None
        if self.relative and self.name != "sgd":
            raise ValueError(
                f"relative: a rate relative to 2/λ_max(K∞) is gradient descent's stable bound, which "
                f"says nothing for {self.name}; give relative: false and an absolute learning_rate"
            )
        bound = self.stable_fraction()
        if self.relative and self.learning_rate >= bound:
            raise ValueError(
                f"learning_rate: {self.learning_rate:g} × 2/λ_max is at or above the stable bound of "
                f"{self.describe_bound()} ({bound:.3g} × 2/λ_max); give a smaller fraction "
                "(or relative: false for an absolute rate)"
            )
        return self

    def stable_fraction(self) -> float:
        """The largest stable η as a multiple of 2/λ_max for sgd on a quadratic: 1 for plain GD,
        1 + β with heavy-ball momentum β, (1 + β)/(1 + 2β) with Nesterov's."""
        beta = float(self.params.get("momentum") or 0.0)
        if bool(self.params.get("nesterov", False)):
            return (1 + beta) / (1 + 2 * beta)
        return 1 + beta

    def describe_bound(self) -> str:
        if self.params.get("momentum"):
            return "Nesterov momentum" if self.params.get("nesterov") else "heavy-ball momentum"
        return "gradient descent"

    @property
    def tag(self) -> str:
        """The name in the table: label, or name with its parameters and rate."""
        if self.label:
            return self.label
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        rate = f"{self.learning_rate:g}{'·2/λmax' if self.relative else ''}"
        return f"{self.name}({rate}{',' + params if params else ''})"


class TrainingDiverged(RuntimeError):
    """A cell whose network loss left floating point: recorded as failed, never stored as a result."""


def _expected_kind(name: str, key: str) -> str | None:
    """ "a number" or "true or false" from the default of optax.<name>'s parameter, None if unknown."""
    import inspect

    import optax

    try:
        parameter = inspect.signature(getattr(optax, name)).parameters[key]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if isinstance(parameter.default, bool):
        return "true or false"
    if isinstance(parameter.default, int | float) or "float" in str(parameter.annotation):
        return "a number"  # momentum: None by default, a float (or an array) when given
    return None


class TargetConfig(Strict):
    """Targets: a random wide network (teacher) or y = sin(⟨x, u⟩·frequency/√dim·√dim) along a
    random unit u (sine); ignored for data from a file."""

    kind: Literal["teacher", "sine"] = "teacher"
    activation: ActivationSpec = ActivationSpec(preset="relu")
    depth: Annotated[int, Field(ge=1, le=20, strict=True)] = 2
    width: PositiveInt = 2048
    frequency: Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)] = 1.0
    seed: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 1


class TrainingData(Strict):
    """Inputs: `sphere` (radius √dim, n_train + n_test points) or `file` (.npz with arrays x
    (N, dim) and y (N,) or (N, o): the first n_train rows train, the next n_test test)."""

    kind: Literal["sphere", "file"] = "sphere"
    dim: Annotated[int, Field(ge=1, le=4096, strict=True)] = 8
    n_train: Annotated[int, Field(ge=1, le=4096, strict=True)] = 32
    n_test: Annotated[int, Field(ge=1, le=4096, strict=True)] = 32
    seed: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 0
    path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainingData:
        if self.kind == "file" and not self.path:
            raise ValueError("path: required when kind is 'file'")
        if self.kind != "file" and self.path is not None:
            raise ValueError("path: applies only to kind 'file'")
        return self


class TrainingConfig(RunConfig):
    """Finite-width training against the infinite-width and linearised predictions."""

    study: Literal["training"] = "training"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[Annotated[int, Field(ge=1, le=20, strict=True)]], Field(min_length=1)] = Field(
        default_factory=lambda: [3]
    )
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = Field(default_factory=lambda: [64, 256, 1024])
    schedule: Literal["constant", "quadratic"] = "constant"
    seeds: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 8
    chunk: PositiveInt = 8
    sigma_w: SigmaWChoice = None
    sigma_b: Annotated[list[SigmaB], Field(min_length=1)] = Field(default_factory=lambda: [0.0])
    data: TrainingData = TrainingData()
    target: TargetConfig = TargetConfig()
    optimizers: Annotated[list[OptimizerConfig], Field(min_length=1)] = Field(
        default_factory=lambda: [OptimizerConfig()]
    )
    steps: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 1000
    observe: Annotated[int, Field(ge=1, le=200, strict=True)] = 12
    linearized: bool = True
    drift: bool = True
    method: Literal["structured", "jacobian"] = "structured"
    dtype: Literal["float32", "float64"] = "float64"

    _listify = field_validator("activations", "depths", "widths", "sigma_b", "optimizers", mode="before")(
        as_list
    )
    _unique = field_validator("depths", "widths", "sigma_b", mode="after")(lambda v: sorted(set(v)))

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        check_sigma_w_choice(self.sigma_w, self.activations, list(self.sigma_b))
        tags = [o.tag for o in self.optimizers]
        if len(set(tags)) != len(tags):
            raise ValueError("optimizers: two entries with one name; give them different labels")
        return self

    def sigma_w_of(self, name: str) -> float | None:
        return sigma_w_for(self.sigma_w, name)


@dataclass(frozen=True, eq=False)  # the optimizer's params dict is not hashable; cells are told apart by id
class Cell:
    activation: AnyActivation
    depth: int
    width: int
    sigma_w: float | None
    sigma_b: float
    optimizer: OptimizerConfig
    seeds: int
    steps: int
    observe: int
    out_dim: int = 1
    setting: tuple[
        tuple[str, Any], ...
    ] = ()  # data, target, schedule, dtype, …: what else decides the numbers

    @property
    def rows(self) -> int:
        return self.seeds * len(observation_steps(self.steps, self.observe))

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "training"))

    def label(self) -> str:
        return f"training {self.activation.name} l={self.depth} m={self.width} {self.optimizer.tag}"


def data_setting(config: TrainingConfig) -> tuple[tuple[str, Any], ...]:
    """What besides a cell's own keys decides its numbers: the data (a file by its content hash),
    the target, the width schedule, dtype, eNTK method and what is measured."""
    data = config.data.model_dump(mode="json")
    if config.data.kind == "file":
        data = {k: v for k, v in data.items() if k != "path"} | {
            "sha256": file_digest(required_path(config.data.path))
        }
    return (
        ("data", data),
        ("target", config.target.model_dump(mode="json") if config.data.kind == "sphere" else None),
        ("schedule", config.schedule),
        ("dtype", config.dtype),
        ("method", config.method),
        ("linearized", config.linearized),
        ("drift", config.drift),
    )


def expand(config: TrainingConfig) -> list[Cell]:
    out_dim = 1
    if config.data.kind == "file":
        out_dim = load_training_data(config)[1].shape[1]  # a bad file is a config error before any cell runs
    setting = data_setting(config)
    return [
        Cell(
            act,
            depth,
            m,
            config.sigma_w_of(act.name),
            b,
            opt,
            config.seeds,
            config.steps,
            config.observe,
            out_dim,
            setting,
        )
        for act in (spec.build() for spec in config.activations)
        for b in config.sigma_b
        for depth in config.depths
        for opt in config.optimizers
        for m in config.widths
    ]


def load_training_data(config: TrainingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (n, d), y_train (n, o), x_test (n*, d), y_test (n*, o)), float64."""
    data = config.data
    n, n_test = data.n_train, data.n_test
    if data.kind == "file":
        path = required_path(data.path)
        try:
            x = load_points(path, "x")
            y = np.asarray(np.load(path, allow_pickle=False)["y"], np.float64)
        except (ValueError, OSError, KeyError) as err:
            raise ConfigError(f"data.path: {err} (expected an .npz with arrays x and y)") from None
        y = y[:, None] if y.ndim == 1 else y
        if y.shape[0] != x.shape[0]:
            raise ConfigError(f"data.path: x has {x.shape[0]} rows but y has {y.shape[0]}")
        if x.shape[0] < n + n_test:
            raise ConfigError(
                f"data.n_train: n_train + n_test = {n + n_test} but the file has {x.shape[0]} rows"
            )
        return x[:n], y[:n], x[n : n + n_test], y[n : n + n_test]
    x = np.asarray(sphere(jax.random.PRNGKey(data.seed), n + n_test, data.dim), np.float64)
    y = targets(config.target, x)
    return x[:n], y[:n], x[n:], y[n:]


def targets(target: TargetConfig, x: np.ndarray) -> np.ndarray:
    """Targets for inputs x (N, d): (N, 1). The teacher draws from its own key stream (a student
    with seed s must not be the teacher of seed s)."""
    key = jax.random.fold_in(jax.random.PRNGKey(target.seed), 0x7E4C4E5)
    if target.kind == "sine":
        u = np.asarray(jax.random.normal(key, (x.shape[1],)), np.float64)
        u /= np.linalg.norm(u)
        return np.sin(target.frequency * (x @ u))[:, None]
    teacher = MLP(
        activation=target.activation.build(), depth=target.depth, width=target.width, schedule="constant"
    )
    params = teacher.init(key, jnp.asarray(x[:1]))
    return np.asarray(teacher.apply(params, jnp.asarray(x)), np.float64)


def _net(cell: Cell, dtype: str, schedule: str) -> MLP:
    sigma_w, sigma_b = resolve_sigmas(cell.activation, cell.sigma_w, cell.sigma_b)
    return MLP(
        activation=cell.activation,
        depth=cell.depth,
        width=cell.width,
        out_dim=cell.out_dim,
        schedule=schedule,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        dtype=dtype,
    )


def limit_setting(config: TrainingConfig, cell: Cell) -> dict[str, Any]:
    """K∞/n on train and test-train inputs, its λ_max, and the data: shared by a setting's cells."""
    x, y, x_test, y_test = load_training_data(config)
    net = _net(cell, "float64", config.schedule)
    with jax.ensure_compile_time_eval():
        _, theta = limit_kernels(net, jnp.asarray(np.r_[x, x_test]))
    kernel = np.asarray(theta, np.float64) / len(x)
    k_train, k_test_train = kernel[: len(x), : len(x)], kernel[len(x) :, : len(x)]
    return {
        "x": x,
        "y": y,
        "x_test": x_test,
        "y_test": y_test,
        "k_train": k_train,
        "k_test_train": k_test_train,
        "lambda_max": float(np.linalg.eigvalsh(k_train)[-1]),
    }


def learning_rate(optimizer: OptimizerConfig, lambda_max: float) -> float:
    return optimizer.learning_rate * 2 / lambda_max if optimizer.relative else optimizer.learning_rate


def limit_outputs(
    optimizer: OptimizerConfig,
    lr: float,
    setting: dict[str, Any],
    f0_train: np.ndarray,
    f0_test: np.ndarray,
    steps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The limit's outputs (S, T, n, o), (S, T, n*, o) from each seed's f₀, or None where the
    optimizer has no function-space limit (anything but sgd)."""
    if optimizer.name != "sgd":
        return None
    k_train, k_test_train, y = (jnp.asarray(setting[k]) for k in ("k_train", "k_test_train", "y"))
    f0, f0_t = jnp.asarray(f0_train), jnp.asarray(f0_test)
    momentum = optimizer.params.get("momentum")
    if momentum:
        nesterov = bool(optimizer.params.get("nesterov", False))
        out = limit_momentum(k_train, k_test_train, y, f0, f0_t, lr, float(momentum), nesterov, steps)
    else:
        out = limit_gradient_descent(k_train, k_test_train, y, f0, f0_t, lr, jnp.asarray(steps))
    return np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)


def compute(cell: Cell, memo: Memo) -> list[dict[str, Any]]:
    config: TrainingConfig = memo.config
    net = _net(cell, config.dtype, config.schedule)
    sigma_w, sigma_b = net.sigmas
    setting = memo.get(
        ("limit", cell.activation, cell.depth, sigma_w, sigma_b), lambda: limit_setting(config, cell)
    )
    lr = learning_rate(cell.optimizer, setting["lambda_max"])
    optimizer = make_optimizer(cell.optimizer.name, lr, cell.optimizer.params)
    steps = observation_steps(cell.steps, cell.observe)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cell.seeds)])
    parts = [
        train_seeds(
            net,
            keys[i : i + config.chunk],
            setting["x"],
            setting["y"],
            setting["x_test"],
            optimizer,
            steps,
            linearized=config.linearized,
            drift=config.drift,
            method=config.method,
        )
        for i in range(0, cell.seeds, config.chunk)
    ]

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values).astype(np.float64)

    def always(name: str) -> np.ndarray:  # what every run measures
        values = joined(name)
        assert values is not None, name
        return values

    f_train, f_test, movement = always("f_train"), always("f_test"), always("movement")
    lin_train, lin_test, k0, drift = joined("lin_train"), joined("lin_test"), joined("k0"), joined("drift")
    # λ_max(K(θ₀)) / λ_max(K∞): above 1/fraction, η is beyond the seed's own stable bound
    k0_ratio = (
        np.linalg.eigvalsh(k0)[:, -1] / setting["lambda_max"]
        if k0 is not None
        else np.full(cell.seeds, math.nan)
    )
    limit = limit_outputs(cell.optimizer, lr, setting, f_train[:, 0], f_test[:, 0], steps)
    y, y_test = setting["y"], setting["y_test"]
    nan = np.full(f_train.shape[:2], math.nan)
    measured: dict[str, np.ndarray] = {
        "train_loss": mse(f_train, y),
        "test_loss": mse(f_test, y_test),
        "lin_train_loss": mse(lin_train, y) if lin_train is not None else nan,
        "lin_test_loss": mse(lin_test, y_test) if lin_test is not None else nan,
        "limit_train_loss": mse(limit[0], y) if limit else nan,
        "limit_test_loss": mse(limit[1], y_test) if limit else nan,
        "diff_lin": rms(f_test, lin_test) if lin_test is not None else nan,
        "diff_limit": rms(f_test, limit[1]) if limit else nan,
        "drift": drift if drift is not None else nan,
        "movement": movement,
        "k0_ratio": np.repeat(k0_ratio[:, None], len(steps), axis=1),
    }
    for name in ("train_loss", "test_loss"):
        if not np.all(np.isfinite(measured[name])):
            seeds = sorted({int(s) for s in np.nonzero(~np.isfinite(measured[name]))[0]})
            raise TrainingDiverged(
                f"training diverged: the network's {name.replace('_', ' ')} is NaN/Inf for seeds "
                f"{', '.join(map(str, seeds[:5]))}{' …' if len(seeds) > 5 else ''} ({cell.optimizer.tag}, "
                f"learning rate {lr:g}: too large for this network)"
            )
    base = {
        "activation": cell.activation.name,
        "depth": cell.depth,
        "width": cell.width,
        "widths": sample_widths(net.hidden),
        "schedule": config.schedule,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "optimizer": cell.optimizer.tag,
        "learning_rate": lr,
        "lr_relative": lr * setting["lambda_max"] / 2,
        "n_train": len(y),
        "n_test": len(y_test),
        "in_dim": setting["x"].shape[1],
    }
    return [
        base | {"seed": s, "step": int(t)} | {k: float(v[s, i]) for k, v in measured.items()}
        for s in range(cell.seeds)
        for i, t in enumerate(steps)
    ]


SETTING = ["activation", "depth", "sigma_b", "optimizer", "schedule"]


def width_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """At the last observed step: fitted slopes against m (median over seeds, bootstrap 95%) of the
    drift, ‖f − f^∞‖ and ‖f − f^lin‖ per setting."""
    last = table[table["step"] == table["step"].max()]
    first = table[table["step"] == 0]
    rows = []
    for key, g in last.groupby(SETTING, sort=False):
        row = dict(zip(SETTING, key, strict=True))
        widths = np.array(sorted(g["width"].unique()), float)
        same = np.logical_and.reduce([first[k] == v for k, v in zip(SETTING, key, strict=True)])
        row["lin_diverged"] = diverged_widths(g, first[same])
        for column in ("drift", "diff_limit", "diff_lin", "movement"):
            if column == "diff_lin" and row["lin_diverged"]:
                row[column] = (math.nan, math.nan, math.nan)  # a slope through a blow-up says nothing
                continue
            values = [g[g["width"] == w][column].to_numpy(float) for w in widths]
            values = [v[np.isfinite(v)] for v in values]
            if any(len(v) == 0 for v in values):
                row[column] = (math.nan, math.nan, math.nan)
                continue
            fit = fit_rate(widths, values)
            row[column] = (fit.slope, fit.low, fit.high)
        row["widths"] = len(widths)
        row["seeds"] = int(g["seed"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def _loss_text(value: float, start: float) -> str:
    """A median loss, or "diverged" where it is non-finite or 1000× its value at the first step."""
    if math.isnan(value) and math.isnan(start):
        return "nan"  # not measured (no linearisation, no limit)
    if not math.isfinite(value) or (math.isfinite(start) and value > 1e3 * max(start, 1e-300)):
        return "diverged"
    return f"{value:.3g}"


def diverged_widths(last: pd.DataFrame, first: pd.DataFrame) -> list[int]:
    """Widths where the linearised network's median train loss at the last step is not finite or
    above 1e3× its start: η beyond 2/λ_max of the seed's own K(θ₀), which the network itself can
    survive (it moves its kernel) but its linearisation cannot."""
    out = []
    for width, g in last.groupby("width"):
        start = first[first["width"] == width]["lin_train_loss"].median()
        end = g["lin_train_loss"].median()
        if not np.isfinite(end) or (np.isfinite(start) and end > 1e3 * max(start, 1e-300)):
            out.append(int(width))
    return out


def summarize(table: pd.DataFrame, config: TrainingConfig, fits: pd.DataFrame | None = None) -> str:
    last_step = int(table["step"].max())
    lines = [
        f"# {config.name}",
        "",
        'Training study (science.md, "Training dynamics"): MSE loss (1/2n)Σ‖f − y‖², '
        f"{config.data.n_train} train and {config.data.n_test} test points, {last_step} steps. "
        "Slopes of the median over seeds against the width m at the last step, 95% bootstrap "
        "intervals over seeds; the standard picture: drift ∝ m^(−1/2).",
        "",
    ]
    rows = []
    for row in (fits_csv(table, config) if fits is None else fits).itertuples():
        cells = []
        for column in ("drift", "diff_limit", "diff_lin", "movement"):
            slope, low, high = (getattr(row, f"{column}_{end}") for end in ("slope", "ci_low", "ci_high"))
            if column == "diff_lin" and row.lin_diverged:
                cells.append(f"linearisation diverges at m = {', '.join(row.lin_diverged.split())}")
                continue
            if not np.isfinite(slope):
                cells.append("—")
                continue
            text, interval = slope_text(slope, low, high, row.widths, row.seeds)
            cells.append(f"{text} {interval}")
        rows.append([row.activation, row.depth, f"{row.sigma_b:g}", row.optimizer, *cells])
    columns = [
        "activation",
        "depth",
        "σ_b",
        "optimizer",
        "drift slope",
        "‖f − f^∞‖ slope",
        "‖f − f^lin‖ slope",
        "θ movement slope",
    ]
    lines += markdown_table(columns, rows)
    last = table[table["step"] == last_step]
    lines += [
        "",
        f"## At step {last_step} (median over seeds)",
        "",
    ]
    group_keys = ["activation", "depth", "sigma_b", "optimizer", "width"]
    start = (
        table[table["step"] == table["step"].min()].groupby(group_keys, sort=False).median(numeric_only=True)
    )
    rows = []
    for key, g in last.groupby(group_keys, sort=False):
        med = g.median(numeric_only=True)

        def loss(column: str, med: pd.Series = med, key: tuple = key) -> str:
            # the criterion of diverged_widths: non-finite, or 1000× the loss at the first step
            return _loss_text(med[column], start.loc[key, column] if key in start.index else math.nan)

        rows.append(
            [
                key[0],
                key[1],
                f"{key[2]:g}",
                key[3],
                key[4],
                f"{med['learning_rate']:.3g}",
                loss("train_loss"),
                loss("test_loss"),
                loss("lin_test_loss"),
                loss("limit_test_loss"),
                f"{med['drift']:.3g}",
                f"{med['diff_limit']:.3g}",
                f"{med['diff_lin']:.3g}",
            ]
        )
    columns = [
        "activation",
        "depth",
        "σ_b",
        "optimizer",
        "m",
        "η",
        "train loss",
        "test loss",
        "lin test loss",
        "limit test loss",
        "drift",
        "‖f − f^∞‖",
        "‖f − f^lin‖",
    ]
    lines += markdown_table(columns, rows)
    return "\n".join(lines) + "\n"


def figures(
    table: pd.DataFrame, config: TrainingConfig, directory: Path, fits: pd.DataFrame | None = None
) -> list[Path]:
    from ntksim.analysis.figures import draw_figures
    from ntksim.studies.training.plots import plot_against_width, plot_drift_in_time, plot_losses

    fits = fits_csv(table, config) if fits is None else fits

    def against_width(rows: pd.DataFrame, path: Path) -> bool:
        return plot_against_width(rows, path, fits)

    plots = [
        ("losses.png", plot_losses),
        ("width.png", against_width),
        ("drift_time.png", plot_drift_in_time),
    ]
    return draw_figures(directory, [(name, plot, table) for name, plot in plots])


def fits_csv(table: pd.DataFrame, config: TrainingConfig) -> pd.DataFrame:
    """fits.csv: slopes against m at the last step with their 95% intervals, one column each."""
    slopes = width_slopes(table)
    for column in ("drift", "diff_limit", "diff_lin", "movement"):
        values = slopes.pop(column).tolist()
        for i, suffix in enumerate(("slope", "ci_low", "ci_high")):
            slopes[f"{column}_{suffix}"] = [v[i] for v in values]
    slopes["lin_diverged"] = [" ".join(map(str, v)) for v in slopes["lin_diverged"]]
    return slopes


def cost(cells: list[Cell], config: TrainingConfig) -> list[CellCost]:
    """`Study.cost`: `chunk` networks trained at once, each with its parameters, the optimizer's
    state and gradients (≈ 6 copies), the linearisation's origin and tangents (3 more), the
    activations of the training and test inputs and the eNTK at θ₀; the limit kernels on all
    inputs (float64). Seconds: per step a forward and a backward pass over the training inputs
    (≈ 3 forward passes), twice with the linearisation, for every seed."""
    n, n_test, dim = config.data.n_train, config.data.n_test, config.data.dim
    if config.data.kind == "file":
        x, _, x_test, _ = load_training_data(config)
        n, n_test, dim = len(x), len(x_test), x.shape[1]
    estimates = []
    for cell in cells:
        net = _net(cell, config.dtype, config.schedule)
        itemsize = jnp.dtype(net.compute_dtype).itemsize
        params, at_once = net.num_params(dim), min(cell.seeds, config.chunk)
        activations = (n + n_test) * sum(net.layer_widths(dim)[1:])
        copies = 6 + (3 if config.linearized else 0)
        # the eNTK at θ₀ by the config's method (the Jacobian's n·m_l × P with "jacobian")
        per_seed = itemsize * (copies * params + 2 * activations) + bytes_per_seed(net, n, dim, config.method)
        observed = cell.seeds * cell.observe * (n + n_test) * cell.out_dim * 8 * 4
        limits = 12 * (n + n_test) ** 2 * 8
        peak = max(at_once * per_seed, compile_bytes(net.depth)) + observed + limits
        passes = 3 * (2 if config.linearized else 1)
        flops = cell.seeds * cell.steps * passes * forward_flops(net, n, dim)
        seconds = compile_seconds(net.depth) + flops / FLOP_RATE
        estimates.append(CellCost(seconds, int(peak)))
    return estimates


STUDY = Study(
    "training", TrainingConfig, COLUMNS, expand, compute, summarize, figures, fits=fits_csv, cost=cost
)
