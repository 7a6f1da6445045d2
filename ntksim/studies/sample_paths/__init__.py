"""Sample paths: random networks at initialization against the NNGP they converge to.

science.md, "Spectrum and smoothness on the sphere": a wide network at initialization is close to
a Gaussian process with covariance Σ^l, whose paths are smoother the faster its Mercer
eigenvalues μ_k decay. Each cell draws `seeds` networks (any activation, σ_w at the EOC by
default, constant width m, `out_dim` outputs) and evaluates them on a quadrature grid:

- dim 2: the circle S¹ of radius √2 (`circle_points` equispaced angles), dim 3: the sphere S² of
  radius √3 (a product Gauss grid exact to degree 2·kmax + 1);
- part "spectrum": the power p_k = ‖proj_k f‖²/N(d, k) per seed (mean over outputs), its mean and
  standard error over seeds, beside μ_k (Funk–Hecke) and the mean a Gaussian process with
  covariance Σ^l has on the same grid (`grid_mu`, which includes aliasing);
- part "increment" (circle only): E|Δ_h^r f|² for differences of order r = 1, 2, 3 at lags h, and
  the value the kernel gives, Σ_ab c_a c_b Σ^l(cos((a − b)h)). First increments scale like h² for
  every φ of the family (science.md's trap); the kink shows in higher orders, as h^{s − d + 1}
  with s the NNGP's decay exponent (relu, abs: h³; ELU: h⁵; smooth φ: h^{2r});
- part "path" (circle only): the first `paths` outputs of seed 0, for the figures.
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
from ntksim.analysis.tables import markdown_table
from ntksim.data.sphere_grids import circle_grid, circle_power, grid_power, kernel_grid_power, sphere_grid
from ntksim.engine.cells import content_id
from ntksim.engine.config import PositiveInt, RunConfig, Strict, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.mercer import kernel_function, mercer_eigenvalues, predicted_decay
from ntksim.nets.model import MLP, forward, init_params
from ntksim.studies._costs import forward_cost
from ntksim.studies._sections import (
    ActivationSpec,
    SigmaWChoice,
    cell_content,
    check_sigma_w_choice,
    sigma_w_for,
)

COLUMNS = (
    "part",
    "activation",
    "depth",
    "dim",
    "width",
    "sigma_w",
    "sigma_b",
    "seeds",
    "k",
    "power",
    "power_se",
    "mu",
    "grid_mu",
    "order",
    "lag",
    "h",
    "increment",
    "increment_se",
    "increment_kernel",
    "exponent_theory",
    "seed",
    "output",
    "angle",
    "value",
)
SigmaB = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
ORDERS = (1, 2, 3)
LIVE = 1e-11  # powers compared only where the kernel's grid mean is above this share of its largest
SEED_CHUNK = 8  # networks per compiled call: bounds memory at seeds × points × width


class IncrementConfig(Strict):
    """Lags (in grid steps of the circle) at which E|Δ_h^r f|² is measured."""

    lags: Annotated[list[Annotated[int, Field(ge=1, strict=True)]], Field(min_length=2)] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16]
    )

    _listify = field_validator("lags", mode="before")(as_list)


CircleOrSphere = Literal[2, 3]
BOTH_DIMS: tuple[CircleOrSphere, ...] = (2, 3)  # the default, typed


class SamplePathsConfig(RunConfig):
    """Power spectra and increments of random networks on S¹ and S² against their NNGP.

    sigma_w: null (EOC), a number, or a mapping from activation names to numbers."""

    study: Literal["sample_paths"] = "sample_paths"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[Annotated[int, Field(ge=1, le=100, strict=True)]], Field(min_length=1)] = Field(
        default_factory=lambda: [3]
    )
    dims: Annotated[list[CircleOrSphere], Field(min_length=1)] = Field(
        default_factory=lambda: list(BOTH_DIMS)
    )
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = Field(default_factory=lambda: [64, 256, 1024])
    seeds: Annotated[int, Field(ge=2, le=100_000, strict=True)] = 32
    out_dim: PositiveInt = 8
    sigma_w: SigmaWChoice = None
    sigma_b: Annotated[list[SigmaB], Field(min_length=1)] = Field(default_factory=lambda: [0.0])
    circle_points: Annotated[int, Field(ge=16, le=65_536, strict=True)] = 1024
    circle_kmax: Annotated[int, Field(ge=1, strict=True)] = 64  # ≥ 1: k = 0 alone is a constant path
    sphere_kmax: Annotated[int, Field(ge=1, le=24, strict=True)] = 16  # ≤ 24: n ≤ 4 802 grid points
    increments: IncrementConfig = IncrementConfig()
    paths: Annotated[int, Field(ge=0, le=16, strict=True)] = 3

    _listify = field_validator("activations", "depths", "dims", "widths", "sigma_b", mode="before")(as_list)
    _unique = field_validator("depths", "dims", "widths", "sigma_b", mode="after")(lambda v: sorted(set(v)))

    @model_validator(mode="after")
    def _check(self) -> SamplePathsConfig:
        if self.circle_kmax >= self.circle_points // 2:
            raise ValueError(f"circle_kmax: must be below circle_points / 2 = {self.circle_points // 2}")
        if 3 * max(self.increments.lags) >= self.circle_points:
            raise ValueError("increments.lags: 3 × the largest lag must be below circle_points")
        if self.paths > self.out_dim:
            raise ValueError(f"paths: at most out_dim = {self.out_dim} (the outputs of seed 0 are the paths)")
        check_sigma_w_choice(self.sigma_w, self.activations, list(self.sigma_b))
        return self

    def sigma_w_of(self, name: str) -> float | None:
        """σ_w of one activation: the number given, its entry in the mapping, or None (its EOC)."""
        return sigma_w_for(self.sigma_w, name)


@dataclass(frozen=True)
class Cell:
    activation: AnyActivation
    depth: int
    dim: int
    width: int
    sigma_w: float | None
    sigma_b: float
    seeds: int
    out_dim: int
    grid: int  # circle points (dim 2) or the sphere's kmax (dim 3)
    kmax: int
    lags: tuple[int, ...]
    paths: int

    @property
    def rows(self) -> int:
        if self.dim == 3:
            return self.kmax + 1
        return self.kmax + 1 + len(ORDERS) * len(self.lags) + self.paths * self.grid

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "sample_paths"))

    def label(self) -> str:
        return f"sample_paths {self.activation.name} l={self.depth} d={self.dim} m={self.width}"


def expand(config: SamplePathsConfig) -> list[Cell]:
    cells = []
    for act in (spec.build() for spec in config.activations):
        for b in config.sigma_b:
            for depth in config.depths:
                for dim in config.dims:
                    grid, kmax = (
                        (config.circle_points, config.circle_kmax)
                        if dim == 2
                        else (config.sphere_kmax, config.sphere_kmax)
                    )
                    paths = config.paths if dim == 2 else 0
                    cells += [
                        Cell(
                            act,
                            depth,
                            dim,
                            m,
                            config.sigma_w_of(act.name),
                            b,
                            config.seeds,
                            config.out_dim,
                            grid,
                            kmax,
                            tuple(config.increments.lags),
                            paths,
                        )
                        for m in config.widths
                    ]
    return cells


def network_outputs(net: MLP, x: np.ndarray, seeds: int) -> np.ndarray:
    """Outputs of `seeds` networks (PRNG keys 0 … seeds − 1) at x: (seeds, out_dim, n), float64."""
    sigma_w, sigma_b = net.sigmas

    @jax.jit
    def outputs(keys: jax.Array, points: jax.Array) -> jax.Array:
        def one(key: jax.Array) -> jax.Array:
            params = init_params(net, key, points.shape[1])
            return forward(params, points, net.activation, sigma_w, sigma_b)[0].T

        return jax.vmap(one)(keys)

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    points = jnp.asarray(x, net.compute_dtype)
    chunks = [np.asarray(outputs(keys[i : i + SEED_CHUNK], points)) for i in range(0, seeds, SEED_CHUNK)]
    return np.concatenate(chunks).astype(np.float64)


def difference_weights(order: int) -> np.ndarray:
    """c_a of the forward difference Δ_h^r f(x) = Σ_a c_a f(x + a h), a = 0 … r."""
    return np.array([(-1) ** (order - a) * math.comb(order, a) for a in range(order + 1)], float)


def increments(f: np.ndarray, order: int, lag: int) -> np.ndarray:
    """Mean over positions and outputs of (Δ_h^r f)² on the periodic grid, per seed.
    f: (seeds, outputs, G) → (seeds,)."""
    diff = sum(c * np.roll(f, -a * lag, axis=-1) for a, c in enumerate(difference_weights(order)))
    return np.mean(diff**2, axis=(1, 2))


KERNEL_ACCURACY = 1e-13  # |error| of κ(t) from its interpolant, relative to κ(1) (tested: < 1e-12)


def kernel_increment(kappa: Any, order: int, h: float) -> float:
    """E|Δ_h^r f|² of a Gaussian process with covariance κ(cos(angle difference)); nan where the
    sum Σ_ab c_a c_b κ(cos((a − b)h)), which cancels from O(κ(1)) down to O(h^e), is below 100× its
    round-off (Σ|c_a c_b| · KERNEL_ACCURACY · κ(1)): smooth φ at third order and small h."""
    c = difference_weights(order)
    a = np.arange(order + 1)
    value = float(c @ kappa(np.cos((a[:, None] - a[None, :]) * h)) @ c)
    noise = float(np.sum(np.abs(c)) ** 2) * KERNEL_ACCURACY * abs(float(kappa(np.ones(1))[0]))
    return value if value > 100 * noise else math.nan


def increment_exponent(act: AnyActivation, depth: int, dim_for_s: int, order: int) -> float:
    """The small-h exponent of E|Δ_h^r f|² the NNGP's decay predicts on a great circle:
    min(2r, s − d + 1) with s its exponent on S^{d−1}; 2r for a smooth φ (or depth 1, a linear
    network); nan for kinks away from 0, where science.md gives no s."""
    s = predicted_decay(act, "nngp", dim_for_s, depth)
    if np.isfinite(s):
        return float(min(2 * order, s - dim_for_s + 1))
    if depth < 2 or not act.kinks:
        return float(2 * order)
    return math.nan


def _se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def compute(cell: Cell, memo: Memo) -> list[dict[str, Any]]:
    sigma_w, sigma_b = resolve_sigmas(cell.activation, cell.sigma_w, cell.sigma_b)
    net = MLP(
        activation=cell.activation,
        depth=cell.depth,
        width=cell.width,
        out_dim=cell.out_dim,
        schedule="constant",
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        dtype="float64",
    )
    kappa = memo.get(
        ("nngp", cell.activation, cell.depth, sigma_w, sigma_b),
        lambda: kernel_function(cell.activation, cell.depth, sigma_w, sigma_b, "nngp"),
    )
    mu = memo.get(
        ("mu", cell.activation, cell.depth, sigma_w, sigma_b, cell.dim, cell.kmax),
        lambda: mercer_eigenvalues(
            cell.activation, cell.depth, cell.dim, cell.kmax, "nngp", sigma_w, sigma_b
        ),
    )
    base = {
        "activation": cell.activation.name,
        "depth": cell.depth,
        "dim": cell.dim,
        "width": cell.width,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "seeds": cell.seeds,
    }
    if cell.dim == 2:
        angles, x, w = circle_grid(cell.grid)
        f = network_outputs(net, x, cell.seeds)  # (seeds, outputs, G)
        power = circle_power(f, cell.kmax).mean(axis=1)  # (seeds, kmax + 1)
        # a stationary kernel on the equispaced circle is circulant: its grid mean is a DFT
        grid_mu = np.real(np.fft.rfft(kappa(np.cos(angles))))[: cell.kmax + 1] / cell.grid
    else:
        # A grid twice as fine as kmax: the rule is exact to degree 4·kmax + 1, so components of f
        # above kmax alias into the measured degrees only from beyond 3·kmax.
        x, w = sphere_grid(2 * cell.grid)
        f = network_outputs(net, x, cell.seeds)
        power = grid_power(f.reshape(-1, x.shape[0]), x, w, cell.kmax).reshape(cell.seeds, cell.out_dim, -1)
        power = power.mean(axis=1)
        grid_mu = kernel_grid_power(kappa(np.clip(x @ x.T / 3, -1, 1)), x, w, cell.kmax)
    rows = [
        base
        | {
            "part": "spectrum",
            "k": k,
            "power": float(power[:, k].mean()),
            "power_se": _se(power[:, k]),
            "mu": float(mu[k]),
            "grid_mu": float(grid_mu[k]),
        }
        for k in range(cell.kmax + 1)
    ]
    if cell.dim == 2:
        step = 2 * math.pi / cell.grid
        for order in ORDERS:
            theory = increment_exponent(cell.activation, cell.depth, 2, order)
            for lag in cell.lags:
                values = increments(f, order, lag)
                rows.append(
                    base
                    | {
                        "part": "increment",
                        "order": order,
                        "lag": lag,
                        "h": lag * step,
                        "increment": float(values.mean()),
                        "increment_se": _se(values),
                        "increment_kernel": kernel_increment(kappa, order, lag * step),
                        "exponent_theory": theory,
                    }
                )
        rows += [
            base
            | {
                "part": "path",
                "seed": 0,
                "output": out,
                "angle": float(angles[i]),
                "value": float(f[0, out, i]),
            }
            for out in range(cell.paths)
            for i in range(cell.grid)
        ]
    return rows


def spectrum_agreement(spectrum: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, depth, dim, width, σ_b): over the k whose grid mean is above the noise
    floor (LIVE of the largest: the kernel's interpolant is good to ~1e-14 of κ(1)), the largest
    z = |power − grid_mu| / SE, the share within 4 SE, and the largest relative gap between
    grid_mu and μ_k (aliasing)."""
    rows = []
    keys = ["activation", "sigma_b", "depth", "dim", "width"]
    for key, g in spectrum.groupby(keys, sort=False):
        live = g[g["grid_mu"].abs() > LIVE * g["grid_mu"].abs().max()]
        z = (live["power"] - live["grid_mu"]).abs() / live["power_se"]
        alias = ((live["grid_mu"] - live["mu"]).abs() / live["grid_mu"].abs()).max()
        rows.append(
            dict(zip(keys, key, strict=True))
            | {
                "k_compared": len(live),
                "max_z": float(z.max()),
                "within_4se": float((z <= 4).mean()),
                "alias": float(alias),
            }
        )
    return pd.DataFrame(rows)


def increment_slopes(increments_table: pd.DataFrame) -> pd.DataFrame:
    """Per setting, width and order: the log–log slope of E|Δ_h^r f|² against h over the lags,
    measured and from the kernel, beside the predicted exponent."""
    rows = []
    keys = ["activation", "sigma_b", "depth", "width", "order"]
    for key, g in increments_table.groupby(keys, sort=False):
        g = g.sort_values("h")
        logh = np.log(g["h"].to_numpy(float))
        measured = float(np.polyfit(logh, np.log(g["increment"].to_numpy(float)), 1)[0])
        values = g["increment_kernel"].to_numpy(float)
        ok = np.isfinite(values)  # the kernel's value is nan below its round-off
        kernel = float(np.polyfit(logh[ok], np.log(values[ok]), 1)[0]) if ok.sum() >= 2 else math.nan
        rows.append(
            dict(zip(keys, key, strict=True))
            | {"measured": measured, "kernel": kernel, "theory": float(g["exponent_theory"].iloc[0])}
        )
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame, config: SamplePathsConfig, fits: pd.DataFrame | None = None) -> str:
    lines = [
        f"# {config.name}",
        "",
        'Sample-path study (science.md, "Spectrum and smoothness on the sphere"): random networks '
        f"at initialization, {config.seeds} seeds × {config.out_dim} outputs per width, against the "
        "NNGP Σ^l. power: p_k = ‖proj_k f‖²/N(d, k), mean over seeds (± SE); grid_mu: its mean for "
        "the Gaussian process with covariance Σ^l on the same grid; μ_k: Funk–Hecke.",
        "",
        "## Power spectrum against the NNGP",
        "",
        "z = (power − grid_mu)/SE; alias: the largest relative gap between grid_mu and μ_k.",
        "",
    ]
    spectrum = table[table["part"] == "spectrum"]
    lines += markdown_table(
        ["activation", "σ_b", "depth", "d", "m", "k compared", "max abs z", "within 4 SE", "alias"],
        (
            [
                r.activation,
                f"{r.sigma_b:g}",
                f"{r.depth:.0f}",
                f"{r.dim:.0f}",
                f"{r.width:.0f}",
                r.k_compared,
                f"{r.max_z:.2f}",
                f"{100 * r.within_4se:.0f}%",
                f"{r.alias:.1e}",
            ]
            for r in spectrum_agreement(spectrum).itertuples()
        ),
    )
    inc = table[table["part"] == "increment"]
    if len(inc):
        slopes = increment_slopes(inc)
        lags = ", ".join(str(int(v)) for v in sorted(inc["lag"].unique()))
        lines += [
            "",
            "## Smoothness on the circle: E|Δ_h^r f|² ~ h^e",
            "",
            f"Slopes over h = lag · 2π/{config.circle_points}, lags {{{lags}}}; theory: min(2r, s − d + 1) "
            "from the NNGP's decay s (2r for smooth φ). First differences (r = 1) scale like h² for every "
            "φ of the family (science.md's trap): compare r = 2, 3. kernel e: the same slope of the Gaussian "
            "process's exact E|Δ_h^r f|², over the lags where that sum is above its round-off "
            "(— where fewer than two are).",
            "",
        ]
        lines += markdown_table(
            ["activation", "σ_b", "depth", "m", "r", "measured e", "kernel e", "theory"],
            (
                [
                    r.activation,
                    f"{r.sigma_b:g}",
                    f"{r.depth:.0f}",
                    f"{r.width:.0f}",
                    f"{r.order:.0f}",
                    f"{r.measured:.2f}",
                    "—" if not np.isfinite(r.kernel) else f"{r.kernel:.2f}",
                    f"{r.theory:g}",
                ]
                for r in slopes.itertuples()
            ),
        )
    return "\n".join(lines) + "\n"


def figures(
    table: pd.DataFrame, config: SamplePathsConfig, directory: Path, fits: pd.DataFrame | None = None
) -> list[Path]:
    from ntksim.analysis.figures import draw_figures
    from ntksim.studies.sample_paths.plots import plot_increments, plot_paths, plot_power_spectra

    spectra = table[table["part"] == "spectrum"].groupby("dim")
    return draw_figures(
        directory,
        [
            ("paths_circle.png", plot_paths, table[table["part"] == "path"]),
            *((f"power_spectrum_d{dim:.0f}.png", plot_power_spectra, rows) for dim, rows in spectra),
            ("increments_circle.png", plot_increments, table[table["part"] == "increment"]),
        ],
    )


def fits_csv(table: pd.DataFrame, config: SamplePathsConfig) -> pd.DataFrame:
    """fits.csv: the increments' fitted exponents (measured, kernel, theory) and the spectra's
    agreement with the NNGP, one table with a `fit` column naming which."""
    parts = [spectrum_agreement(table[table["part"] == "spectrum"]).assign(fit="power_spectrum")]
    increments_table = table[table["part"] == "increment"]
    if len(increments_table):
        parts.append(increment_slopes(increments_table).assign(fit="increment_exponent"))
    return pd.concat(parts, ignore_index=True)


def grid_size(cell: Cell) -> int:
    """Points the cell's networks are evaluated at: the circle's, or the sphere grid of twice
    its kmax ((2k + 1)·(4k + 2) points)."""
    return cell.grid if cell.dim == 2 else (2 * cell.grid + 1) * (4 * cell.grid + 2)


def cost(cells: list[Cell], config: SamplePathsConfig) -> list[CellCost]:
    """`Study.cost`: every seed's outputs at the grid (SEED_CHUNK networks at a time), their
    float64 copy and power spectra, and on the sphere the limit kernel at every pair of grid
    points (G² float64, a few copies)."""
    estimates = []
    for cell in cells:
        sigma_w, sigma_b = resolve_sigmas(cell.activation, cell.sigma_w, cell.sigma_b)
        net = MLP(cell.activation, depth=cell.depth, width=cell.width, out_dim=cell.out_dim,
                  schedule="constant", sigma_w=sigma_w, sigma_b=sigma_b, dtype="float64")  # fmt: skip
        g = grid_size(cell)
        outputs = forward_cost(net, g, cell.dim, cell.seeds, SEED_CHUNK)
        host = 3 * cell.seeds * cell.out_dim * g * 8 + (4 * g * g * 8 if cell.dim == 3 else 0)
        estimates.append(CellCost(outputs.seconds, outputs.peak_bytes + host))
    return estimates


STUDY = Study(
    "sample_paths", SamplePathsConfig, COLUMNS, expand, compute, summarize, figures, fits=fits_csv, cost=cost
)
