"""Sweep engine: expand a config into cells, compute every seed, write the tidy table.

A cell is one (activation, depth, width m, out_dim); it runs all its seeds in vmapped batches.
K∞ does not depend on m or on the seed, so it is computed once per (activation, depth, out_dim).
results.csv is rewritten atomically after every cell, so a crash keeps every finished cell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ntksim.activations import Activation
from ntksim.config import Config, ConfigError
from ntksim.data import gaussian, load_points, sphere
from ntksim.empirical import empirical_ntk_seeds
from ntksim.limits import limit_ntk
from ntksim.metrics import concentration
from ntksim.model import MLP, sample_widths

COLUMNS = [
    "activation", "a", "b", "depth", "width", "widths", "schedule", "n", "in_dim", "out_dim",
    "sigma_w", "sigma_b", "seed", "method", "err_op", "err_fro", "err_max", "rel_op", "kinf_op",
    "seconds",
]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One point of the sweep grid; its seeds are the config's."""

    activation: Activation
    depth: int
    width: int | None
    out_dim: int

    def net(self, config: Config) -> MLP:
        schedule = config.schedule if isinstance(config.schedule, str) else tuple(config.schedule)
        return MLP(
            activation=self.activation,
            depth=self.depth,
            width=self.width,
            out_dim=self.out_dim,
            schedule=schedule,
            sigma_w=config.sigma_w,
            sigma_b=config.sigma_b,
            dtype=config.ntk.dtype,
        )


def expand(config: Config) -> list[Cell]:
    """All cells, grouped so cells sharing a K∞ are adjacent."""
    return [
        Cell(act, depth, width, out_dim)
        for act in config.activation_objects()
        for depth in config.depths
        for out_dim in config.out_dims
        for width in config.width_values
    ]


def load_data(config: Config) -> np.ndarray:
    """The inputs x, float64 (n, dim); ConfigError on a bad data file."""
    data = config.data
    if data.kind == "file":
        try:
            x = load_points(data.path, data.key)
        except ValueError as err:
            raise ConfigError(f"data.path: {err}") from None
        for name, want, got in (("n", data.n, x.shape[0]), ("dim", data.dim, x.shape[1])):
            if want is not None and want != got:
                raise ConfigError(f"data.{name}: is {want} but the file has {got}")
        return x
    key = jax.random.PRNGKey(data.seed)
    make = sphere if data.kind == "sphere" else gaussian
    return np.asarray(make(key, data.num_points, data.dimension), dtype=np.float64)


def cell_rows(config: Config, cell: Cell, x: np.ndarray, kinf: jax.Array) -> Iterator[dict]:
    """Compute the cell's seeds; yields one results row per seed."""
    net = cell.net(config)
    sigma_w, sigma_b = net.sigmas
    seeds = np.arange(config.seed_offset, config.seed_offset + config.seeds)
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    start = time.perf_counter()
    ks = empirical_ntk_seeds(net, keys, jnp.asarray(x), config.ntk.method, config.ntk.chunk)
    metrics = concentration(ks, kinf)
    seconds = (time.perf_counter() - start) / len(seeds)
    base = {
        "activation": cell.activation.name,
        "a": cell.activation.a,
        "b": cell.activation.b,
        "depth": cell.depth,
        "width": cell.width if cell.width is not None else net.hidden[0] if net.hidden else 0,
        "widths": sample_widths(net.hidden),
        "schedule": config.schedule if isinstance(config.schedule, str) else "explicit",
        "n": x.shape[0],
        "in_dim": x.shape[1],
        "out_dim": cell.out_dim,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "method": config.ntk.method,
    }
    for i, seed in enumerate(seeds):
        row = dict(base, seed=int(seed), seconds=seconds)
        row.update({name: float(values[i]) for name, values in metrics.items()})
        yield row


def write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV via a temporary file and rename, so readers never see half a table."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def run_sweep(config: Config, x: np.ndarray, out_dir: Path, progress: bool | None = None) -> pd.DataFrame:
    """Run every cell; returns the table also written to out_dir/results.csv.

    progress: show a tqdm bar; None shows it only on an interactive terminal.
    """
    cells = expand(config)
    results = out_dir / "results.csv"
    rows: list[dict] = []
    limits: dict[tuple, jax.Array] = {}
    bar = tqdm(
        total=len(cells) * config.seeds, unit="seed", disable=None if progress is None else not progress
    )
    with bar:
        for cell in cells:
            bar.set_postfix_str(f"{cell.activation.name} l={cell.depth} m={cell.width} m_l={cell.out_dim}")
            limit_key = (cell.activation, cell.depth, cell.out_dim)
            if limit_key not in limits:
                limits[limit_key] = limit_ntk(cell.net(config), x, config.limit.backend)
            rows.extend(cell_rows(config, cell, x, limits[limit_key]))
            write_atomic(pd.DataFrame(rows, columns=COLUMNS), results)
            bar.update(config.seeds)
    return pd.DataFrame(rows, columns=COLUMNS)
