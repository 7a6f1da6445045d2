"""Cells: the units of work of a sweep, each named by a hash of its canonical content.

A cell is one (activation, depth, m, out_dim) with a block of seeds, plus everything else that
changes its numbers (schedule, σ's, data, method, dtype, limit backend). Equal content gives an
equal id, so a re-run finds its finished cells, and a changed setting gives new ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ntksim.activations import Activation, AnyActivation
from ntksim.config import Config
from ntksim.limits import resolve_backend
from ntksim.model import MLP


@dataclass(frozen=True)
class Cell:
    """One unit of work: a network, a data set, and seeds [seed_start, seed_start + seed_count)."""

    activation: AnyActivation
    depth: int
    width: int | None
    out_dim: int
    seed_start: int
    seed_count: int
    schedule: str | tuple[int, ...]
    sigma_w: float | None
    sigma_b: float | None
    method: str
    dtype: str
    backend: str
    data: tuple[tuple[str, Any], ...]
    kernel: str = "ntk"

    def net(self) -> MLP:
        return MLP(
            activation=self.activation,
            depth=self.depth,
            width=self.width,
            out_dim=self.out_dim,
            schedule=self.schedule,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
            dtype=self.dtype,
        )

    @property
    def seeds(self) -> range:
        return range(self.seed_start, self.seed_start + self.seed_count)

    @property
    def limit_key(self) -> tuple:
        """Cells with equal keys share K∞ (it depends on neither m nor the seed)."""
        return (
            self.activation,
            self.depth,
            self.out_dim,
            self.sigma_w,
            self.sigma_b,
            self.backend,
            self.data,
            self.kernel,
        )

    def canonical(self) -> dict[str, Any]:
        """What the id hashes. Settings at their default that older cells did not have (kernel
        "ntk") are left out, so cells made before they existed keep their ids."""
        content = asdict(self)
        act = self.activation
        if isinstance(act, Activation):
            content["activation"] = {"a": act.a, "b": act.b, "name": act.name}
        else:
            # The function too: two presets renamed alike must not share cells.
            fn = getattr(act.fn, "__name__", None) or getattr(getattr(act.fn, "fn", None), "__name__", "user")
            content["activation"] = {
                "name": act.name,
                "params": act.params,
                "fn": fn,
                "kinks": list(act.kinks),
            }
        content["data"] = dict(self.data)
        if self.kernel == "ntk":
            del content["kernel"]
        return content

    @property
    def cell_id(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def label(self) -> str:
        seeds = f"seeds {self.seed_start}–{self.seed_start + self.seed_count - 1}"
        kernel = "" if self.kernel == "ntk" else f" {self.kernel}"
        return f"{self.activation.name}{kernel} l={self.depth} m={self.width} m_l={self.out_dim} {seeds}"


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_identity(config: Config) -> tuple[tuple[str, Any], ...]:
    """What identifies the inputs: the generator settings, or the file's content hash."""
    data = config.data
    if data.kind == "file":
        return (("kind", "file"), ("sha256", _file_digest(data.path)), ("key", data.key))
    return (("kind", data.kind), ("n", data.num_points), ("dim", data.dimension), ("seed", data.seed))


def expand(config: Config) -> list[Cell]:
    """All cells of a config, in a stable order (cells sharing K∞ adjacent)."""
    schedule = config.schedule if isinstance(config.schedule, str) else tuple(config.schedule)
    block = config.seeds_per_cell or config.seeds
    data = data_identity(config)
    cells = []
    for act in config.activation_objects():
        for depth in config.depths:
            for out_dim in config.out_dims:
                for width in config.width_values:
                    for start in range(0, config.seeds, block):
                        cells.append(
                            Cell(
                                activation=act,
                                depth=depth,
                                width=width,
                                out_dim=out_dim,
                                seed_start=config.seed_offset + start,
                                seed_count=min(block, config.seeds - start),
                                schedule=schedule,
                                sigma_w=config.sigma_w,
                                sigma_b=config.sigma_b,
                                method=config.ntk.method,
                                dtype=config.ntk.dtype,
                                backend=resolve_backend(act, config.limit.backend),
                                data=data,
                                kernel=config.kernel,
                            )
                        )
    return cells


def config_digest(resolved: dict[str, Any]) -> str:
    """Hash of a resolved config mapping (what run.json records and re-runs compare)."""
    text = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
