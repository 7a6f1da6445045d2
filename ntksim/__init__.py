"""ntksim: finite- vs infinite-width neural tangent kernels of MLPs at the Edge of Chaos."""

from ntksim.activations import Activation, Elementwise, activation
from ntksim.activations.eoc import (
    EOCPoint,
    NoEOCPoint,
    chi,
    correlation_depth,
    eoc,
    eoc_curve,
    eoc_sigma_w,
    resolve_sigmas,
)
from ntksim.analysis.metrics import concentration
from ntksim.data.points import gaussian, load_points, sphere
from ntksim.engine.driver import Plan, RunInterrupted, plan, plot, run, status
from ntksim.engine.run import Run
from ntksim.engine.run import open_run as load_run
from ntksim.kernels.finite_width import FiniteWidth, finite_width
from ntksim.kernels.limits import limit_nngp, limit_ntk
from ntksim.kernels.mercer import harmonic_dimension, mercer_eigenvalues, multiplicities
from ntksim.nets.empirical import (
    empirical_nngp,
    empirical_nngp_seeds,
    empirical_ntk,
    empirical_ntk_seeds,
    empirical_ntk_seeds_together,
)
from ntksim.nets.model import MLP
from ntksim.nets.widths import hidden_widths

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Activation",
    "EOCPoint",
    "Elementwise",
    "FiniteWidth",
    "NoEOCPoint",
    "Plan",
    "Run",
    "RunInterrupted",
    "activation",
    "chi",
    "concentration",
    "correlation_depth",
    "empirical_nngp",
    "empirical_nngp_seeds",
    "empirical_ntk",
    "empirical_ntk_seeds",
    "empirical_ntk_seeds_together",
    "eoc",
    "eoc_curve",
    "eoc_sigma_w",
    "finite_width",
    "gaussian",
    "harmonic_dimension",
    "hidden_widths",
    "limit_nngp",
    "limit_ntk",
    "load_points",
    "load_run",
    "mercer_eigenvalues",
    "multiplicities",
    "plan",
    "plot",
    "resolve_sigmas",
    "run",
    "sphere",
    "status",
]
