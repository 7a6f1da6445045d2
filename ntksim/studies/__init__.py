"""The experiments ntksim runs, one module each, ending in `STUDY = Study(...)`.

concentration: ‖K(θ) − K∞‖ against width; depth: the limit kernel along depth at and off the
Edge of Chaos; positivity: λ_min and rank of NTK/NNGP Gram matrices.
"""
