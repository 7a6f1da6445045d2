"""Finite networks: the Flax MLP and its width schedules, the empirical NTK and NNGP (structured
and by Jacobian), gradient-descent training and its linearisation, and the compilation helpers
(the program store, XLA's quicker CPU options) they run on."""
