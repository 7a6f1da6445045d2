"""Largest relative difference between the closed-form and neural-tangents limits over 200 settings (float64)."""

import itertools

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
import ntksim

worst = 0.0
acts = [ntksim.Activation.preset(n) for n in ("relu", "abs", "linear", "leaky_relu(0.1)")] + [
    ntksim.Activation(-0.4, 1.3)
]
for act, depth, out_dim, sb, sw in itertools.product(acts, (1, 2, 3, 5, 8), (1, 3), (None, 0.5), (None, 1.7)):
    x = ntksim.gaussian(jax.random.PRNGKey(depth), 16, 6)
    net = ntksim.MLP(act, depth=depth, width=8, out_dim=out_dim, sigma_b=sb, sigma_w=sw)
    c = ntksim.limit_ntk(net, x, "closed_form")
    n = ntksim.limit_ntk(net, x, "neural_tangents")
    worst = max(worst, float(jnp.max(jnp.abs(c - n)) / jnp.max(jnp.abs(n))))
print(f"{len(acts) * 5 * 2 * 2 * 2} configurations, max |closed - nt| / max |nt| = {worst:.2e}")
