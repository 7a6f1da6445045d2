"""The first-order theory against ≥ 20 000 draws of the eNTK/eNNGP, case by case (issue 23's table).

Each case is one fluctuations-study setting (x_0 and partners at cosines −1, −0.5, 0, 0.5, 0.99,
norms unequal, one output), computed by the study's own cell code in blocks of seeds and merged:
for every entry of K its variance and mean shift, measured ± standard error, against
`ntksim.finite_width`, and the allowance 3·se + the O(1/m²) remainder bound of
`tests/kernels/test_finite_width.py` (4β·|first order| + 2β²‖K∞‖²_max, β = Σ_k 1/m_k). Then E‖K − K∞‖²_F and
err_op against the prediction (the Gaussian surrogate's mean for err_op).

    .venv/bin/python scripts/fluctuation_agreement.py [--seeds 20000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ntksim.engine.loading import validate  # noqa: E402
from ntksim.engine.study import Memo  # noqa: E402
from ntksim.studies import fluctuations  # noqa: E402

# (net, depth, width, schedule, kernel): every φ of the issue, depths 2–6, widths 64–512, both
# schedules (quadratic only where k²·m stays ≤ 576: the eNTK's cost grows with the widest layer)
CASES = [
    ("relu", 6, 64, "constant", "ntk"),
    ("relu", 3, 512, "constant", "ntk"),
    ("relu", 3, 128, "quadratic", "ntk"),
    ("abs", 4, 64, "quadratic", "nngp"),
    ("abs", 2, 256, "constant", "ntk"),
    ("leaky_relu(0.2)", 5, 128, "constant", "ntk"),
    ("linear", 6, 128, "constant", "nngp"),
    ("tanh", 4, 64, "quadratic", "ntk"),
    ({"activation": "elu", "sigma_b": 0.2}, 3, 64, "constant", "ntk"),
    ({"activation": "elu", "sigma_b": 0.2}, 6, 256, "constant", "nngp"),
    ({"activation": "gelu", "sigma_b": 0.5}, 5, 128, "constant", "ntk"),
]


def run_case(net, depth: int, width: int, schedule: str, kernel: str, seeds: int) -> pd.DataFrame:
    raw = {"study": "fluctuations", "nets": [net], "depths": [depth], "widths": [width],
           "schedules": [schedule], "kernels": [kernel], "seeds": seeds, "seeds_per_cell": 2000}  # fmt: skip
    config = validate(raw)
    memo = Memo(config)
    rows = [row for cell in fluctuations.expand(config) for row in fluctuations.compute(cell, memo)]
    return fluctuations.merged(pd.DataFrame(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("experiments/fluctuations_agreement.md"))
    args = parser.parse_args()
    lines = [
        "# The first-order theory against Monte Carlo, case by case",
        "",
        f"`scripts/fluctuation_agreement.py`, {args.seeds} float64 draws per case; K = Θ/n, six inputs "
        "(x_0 and partners at cosines −1, −0.5, 0, 0.5, 0.99, norms 1, 0.9, 1.1, 1, 0.8, 1.2), one output. "
        "Per case: the worst entry's z = (measured − predicted)/se of its variance, how many of the 21 "
        "entries lie within 3 se plus the O(1/m²) remainder bound (4β|pred| + 2β²k², k = max|K∞|), and "
        "the diagonal entry K(x_0, x_0) and the pair entry K(x_0, x_4) (cosine 0.5) in full.",
        "",
        "| φ | σ_b | kernel | depth | m | schedule | β | worst z | within | Var K_00 measured | predicted "
        "| Var K_04 measured | predicted | E K_04 − K∞ measured | predicted | mean err_op measured "
        "| predicted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for net, depth, width, schedule, kernel in CASES:
        start = time.perf_counter()
        stats = run_case(net, depth, width, schedule, kernel, args.seeds)
        entries = stats[stats["quantity"] == "entry"]
        entries = entries[entries["pred_var"] > 0]
        beta = float(entries["beta"].iloc[0])
        k = float(np.abs(entries["limit"]).max())
        z = (entries["var"] - entries["pred_var"]) / entries["se_var"]
        allowance = 3 * entries["se_var"] + 4 * beta * entries["pred_var"].abs() + 2 * beta**2 * k**2
        within = int((np.abs(entries["var"] - entries["pred_var"]) <= allowance).sum())
        worst = float(z.iloc[int(np.argmax(np.abs(z.to_numpy())))])
        d00 = entries[(entries["i"] == 0) & (entries["j"] == 0)].iloc[0]
        d04 = entries[(entries["i"] == 0) & (entries["j"] == 4)].iloc[0]
        op = stats[stats["quantity"] == "err_op"].iloc[0]
        name = net if isinstance(net, str) else net["activation"]
        sigma_b = 0 if isinstance(net, str) else net["sigma_b"]
        lines.append(
            f"| {name} | {sigma_b:g} | {kernel} | {depth} | {width} | {schedule} | {beta:.4f} | {worst:+.1f} "
            f"| {within}/{len(entries)} | {d00['var']:.4g} ± {d00['se_var']:.2g} | {d00['pred_var']:.4g} "
            f"| {d04['var']:.4g} ± {d04['se_var']:.2g} | {d04['pred_var']:.4g} "
            f"| {d04['mean']:.3g} ± {d04['se_mean']:.2g} | {d04['pred_mean']:.3g} "
            f"| {op['mean']:.4g} ± {op['se_mean']:.2g} | {op['pred_mean']:.4g} |"
        )
        print(lines[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
