"""Inputs: points on the sphere or from a Gaussian, a user's file, and grids on the circle and
sphere for sample paths."""
