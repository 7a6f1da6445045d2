"""Input data sets x_1 … x_n, as arrays of shape (n, dim)."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def _check(n: int, dim: int) -> None:
    if n < 1 or dim < 1:
        raise ValueError(f"need n ≥ 1 points of dimension dim ≥ 1, got n={n}, dim={dim}")


def float64_scope() -> contextlib.AbstractContextManager:
    """JAX's x64 mode for a block, whatever the global flag (jax.enable_x64 from JAX 0.6, the
    experimental one before)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # jax < 0.6

    return enable_x64(True)


def _in_default_dtype(x: Array) -> Array:
    return x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))


def sphere(key: Array, n: int, dim: int) -> Array:
    """n points uniform on the sphere of radius √dim in R^dim, so ⟨x, x⟩/dim = 1. → (n, dim).

    Drawn in float64 whatever JAX's x64 flag, so a seed names the same points in a script and in
    the CLI (which turns x64 on); returned in the default float dtype (float32 without x64)."""
    _check(n, dim)
    with float64_scope():
        g = jax.random.normal(key, (n, dim), jnp.float64)
        x = jnp.sqrt(dim) * g / jnp.linalg.norm(g, axis=1, keepdims=True)
    return _in_default_dtype(x)


def gaussian(key: Array, n: int, dim: int) -> Array:
    """n iid N(0, I_dim) points (norms vary, ≈ √dim). → (n, dim); drawn in float64 as `sphere`."""
    _check(n, dim)
    with float64_scope():
        g = jax.random.normal(key, (n, dim), jnp.float64)
    return _in_default_dtype(g)


def load_points(path: str | Path, key: str | None = None) -> np.ndarray:
    """A user's points from .npy or .npz, never unpickling. → float64 (n, dim).

    For .npz, `key` names the array; without it the archive must hold exactly one array.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"data file {str(path)!r} is a directory, not a .npy or .npz file")
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    # Open the file ourselves so it is closed even when numpy rejects its content.
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise ValueError(f"cannot read {str(path)!r} ({err.strerror})") from None
    with handle:
        try:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                names = list(loaded.keys())
                if key is None:
                    if len(names) != 1:
                        raise ValueError(f"{str(path)!r} holds arrays {names}; name one with data.key")
                    key = names[0]
                if key not in names:
                    raise ValueError(f"{str(path)!r} has no array {key!r} (it has {names})")
                arr = loaded[key]
            else:
                arr = loaded
        except ValueError as err:
            if str(path) in str(err):
                raise
            if "allow_pickle" in str(err):  # numpy's guess for bytes that are no .npy/.npz
                what = "not a .npy or .npz array file (or one of Python objects: ntksim never unpickles)"
                raise ValueError(f"cannot read data file {str(path)!r}: {what}") from None
            raise ValueError(f"cannot read data file {str(path)!r}: {err}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"cannot read data file {str(path)!r}: {err}") from None
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"data in {str(path)!r} must have shape (n, dim), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"data in {str(path)!r} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"data in {str(path)!r} contains NaN or Inf")
    return arr
