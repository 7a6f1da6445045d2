"""Largest relative difference between the closed-form and neural-tangents limits (float64).

200 settings: 5 activations × depths 1–8 × m_l ∈ {1, 3} × with/without bias × on/off the EOC,
on Gaussian inputs of unequal norms. Needs the reference profile:
    .venv-reference/bin/python scripts/limit_agreement.py
"""

import itertools

import jax
import jax.numpy as jnp

import ntksim


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    names = ("relu", "abs", "linear", "leaky_relu(0.1)")
    acts = [ntksim.Activation.preset(n) for n in names] + [ntksim.Activation(-0.4, 1.3)]
    worst, count = 0.0, 0
    for act, depth, out_dim, sigma_b, sigma_w in itertools.product(
        acts, (1, 2, 3, 5, 8), (1, 3), (None, 0.5), (None, 1.7)
    ):
        x = ntksim.gaussian(jax.random.PRNGKey(depth), 16, 6)
        net = ntksim.MLP(act, depth=depth, width=8, out_dim=out_dim, sigma_b=sigma_b, sigma_w=sigma_w)
        closed = ntksim.limit_ntk(net, x, "closed_form")
        nt = ntksim.limit_ntk(net, x, "neural_tangents")
        worst = max(worst, float(jnp.max(jnp.abs(closed - nt)) / jnp.max(jnp.abs(nt))))
        count += 1
    print(f"{count} settings, max |closed - nt| / max |nt| = {worst:.2e}")


if __name__ == "__main__":
    main()
