"""Infinite- and large-width kernels: the limit NTK and NNGP (closed form and quadrature), the
neural-tangents reference backend, Mercer eigenvalues on the sphere, and the first-order (1/m)
finite-width theory."""
