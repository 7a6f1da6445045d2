"""ntksim.data.points: synthetic inputs and loading user points from .npy/.npz without unpickling."""

from __future__ import annotations

import gc
import pathlib
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntksim.data.points import gaussian, load_points, sphere


@pytest.mark.parametrize(("n", "dim"), [(1, 1), (5, 3), (32, 8), (7, 100)])
def test_sphere_shape_and_radius(n: int, dim: int) -> None:
    """sphere(): shape (n, dim), every row of norm √dim (so ⟨x, x⟩/dim = 1) to dtype precision."""
    x = sphere(jax.random.PRNGKey(0), n, dim)
    assert x.shape == (n, dim)
    assert x.dtype == jax.dtypes.canonicalize_dtype(jnp.float64)
    norms = np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1)
    eps = float(jnp.finfo(x.dtype).eps)
    np.testing.assert_allclose(norms, np.sqrt(dim), rtol=20 * eps, atol=0)


def test_sphere_is_deterministic_in_the_key() -> None:
    """Same key, same points; another key, other points."""
    a = sphere(jax.random.PRNGKey(1), 4, 3)
    np.testing.assert_array_equal(a, sphere(jax.random.PRNGKey(1), 4, 3))
    assert not np.allclose(a, sphere(jax.random.PRNGKey(2), 4, 3))


@pytest.mark.parametrize(("n", "dim"), [(1, 1), (6, 4), (3, 50)])
def test_gaussian_shape(n: int, dim: int) -> None:
    """gaussian(): shape (n, dim), finite, and rows of varying norm (unlike the sphere)."""
    x = np.asarray(gaussian(jax.random.PRNGKey(0), n, dim))
    assert x.shape == (n, dim) and np.all(np.isfinite(x))
    if n > 1:
        norms = np.linalg.norm(x, axis=1)
        assert np.ptp(norms) > 0


@pytest.mark.parametrize("make", [sphere, gaussian])
@pytest.mark.parametrize(("n", "dim"), [(0, 3), (3, 0)])
def test_empty_shapes_are_rejected(make, n: int, dim: int) -> None:
    """n < 1 or dim < 1 is a ValueError, not an empty array."""
    with pytest.raises(ValueError, match=r"n=.*dim="):
        make(jax.random.PRNGKey(0), n, dim)


# --- load_points -----------------------------------------------------------------------------------

POINTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 7


def test_load_npy(tmp_path: Path) -> None:
    """A 2-D .npy loads as float64 with the same values."""
    path = tmp_path / "x.npy"
    np.save(path, POINTS)
    x = load_points(path)
    assert x.dtype == np.float64 and x.shape == (4, 3)
    np.testing.assert_array_equal(x, POINTS.astype(np.float64))
    assert load_points(str(path)).shape == (4, 3)


def test_load_npy_integers_become_float64(tmp_path: Path) -> None:
    """Integer points are accepted and converted."""
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6).reshape(2, 3))
    x = load_points(path)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5]])


def test_load_npz_single_array(tmp_path: Path) -> None:
    """An .npz with exactly one array needs no key."""
    path = tmp_path / "x.npz"
    np.savez(path, points=POINTS)
    np.testing.assert_array_equal(load_points(path), POINTS.astype(np.float64))


def test_load_npz_named_key(tmp_path: Path) -> None:
    """With several arrays, `key` picks one."""
    path = tmp_path / "x.npz"
    np.savez(path, train=POINTS, test=POINTS[:2] + 1)
    np.testing.assert_array_equal(load_points(path, key="test"), (POINTS[:2] + 1).astype(np.float64))
    np.testing.assert_array_equal(load_points(path, key="train"), POINTS.astype(np.float64))


def test_load_npz_several_arrays_without_key(tmp_path: Path) -> None:
    """Several arrays and no key: ValueError naming the arrays (so the user can choose)."""
    path = tmp_path / "x.npz"
    np.savez(path, train=POINTS, test=POINTS)
    with pytest.raises(ValueError) as err:
        load_points(path)
    assert "train" in str(err.value) and "test" in str(err.value)


def test_load_npz_unknown_key(tmp_path: Path) -> None:
    """A key the archive does not hold: ValueError naming the key and the arrays present."""
    path = tmp_path / "x.npz"
    np.savez(path, points=POINTS)
    with pytest.raises(ValueError) as err:
        load_points(path, key="pts")
    assert "pts" in str(err.value) and "points" in str(err.value)


class _Tripwire:
    """Unpickling this creates `marker`: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("suffix", ["npy", "npz"])
def test_pickled_object_arrays_are_refused_and_never_unpickled(tmp_path: Path, suffix: str) -> None:
    """An object array (pickle inside) is a ValueError and its payload never runs."""
    marker = tmp_path / "unpickled"
    arr = np.empty((1, 2), dtype=object)
    arr[0, 0], arr[0, 1] = _Tripwire(marker), 1.0
    path = tmp_path / f"x.{suffix}"
    if suffix == "npy":
        np.save(path, arr, allow_pickle=True)
    else:
        np.savez(path, points=arr)
    with pytest.raises(ValueError):
        load_points(path)
    assert not marker.exists()
    # The tripwire works: loading the same file with pickle allowed does set it off.
    loaded = np.load(path, allow_pickle=True)
    if suffix == "npz":
        with loaded:
            loaded["points"]
    assert marker.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(tmp_path: Path, bad: float) -> None:
    """NaN or ±Inf anywhere is a ValueError."""
    arr = POINTS.astype(np.float64)
    arr[2, 1] = bad
    path = tmp_path / "x.npy"
    np.save(path, arr)
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_points(path)


@pytest.mark.parametrize(
    "arr",
    [np.arange(5.0), np.ones((2, 3, 4)), np.float64(3.0), np.ones((0, 3)), np.ones((3, 0))],
    ids=["1-D", "3-D", "scalar", "no-rows", "no-columns"],
)
def test_wrong_shapes_are_rejected(tmp_path: Path, arr: np.ndarray) -> None:
    """Only non-empty 2-D arrays (n, dim) are points."""
    path = tmp_path / "x.npy"
    np.save(path, arr)
    with pytest.raises(ValueError, match="shape"):
        load_points(path)


@pytest.mark.parametrize(
    "arr", [np.ones((2, 2), dtype=bool), np.ones((2, 2), dtype=complex), np.array([["a", "b"]])]
)
def test_non_real_dtypes_are_rejected(tmp_path: Path, arr: np.ndarray) -> None:
    """Booleans, complex numbers and strings are not points."""
    path = tmp_path / "x.npy"
    np.save(path, arr)
    with pytest.raises(ValueError, match="real numbers"):
        load_points(path)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist (or is a directory) is a ValueError naming it."""
    with pytest.raises(ValueError, match="does not exist"):
        load_points(tmp_path / "nope.npy")
    with pytest.raises(ValueError, match="is a directory, not a"):
        load_points(tmp_path)


def test_corrupt_npy(tmp_path: Path) -> None:
    """A file that is not a valid .npy is a ValueError naming it."""
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPYgarbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_points(path)


def test_corrupt_npz(tmp_path: Path) -> None:
    """A file that looks like a zip but is not is a ValueError, like every other bad data file."""
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04garbage")
    raised = "nothing"
    with warnings.catch_warnings():
        # np.load leaks the file handle of an invalid zip; drop the traceback and close it quietly.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            load_points(path)
        except Exception as err:
            raised = type(err).__name__
        gc.collect()
    assert raised == "ValueError"


@pytest.mark.parametrize("kind", ["sphere", "gaussian"])
def test_a_seed_names_the_same_points_with_and_without_x64(kind: str) -> None:
    """A script (x64 off) and the CLI (x64 on) must see the same data for the same seed."""
    import os
    import subprocess
    import sys

    code = (f"import json, jax, numpy as np, ntksim; x = ntksim.{kind}(jax.random.PRNGKey(3), 5, 4); "
            "print(x.dtype); print(json.dumps(np.asarray(x, np.float64).tolist()))")  # fmt: skip
    out = {}
    for flag in ("0", "1"):
        env = dict(os.environ, JAX_ENABLE_X64=flag, JAX_PLATFORMS="cpu")
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        dtype, values = proc.stdout.splitlines()
        out[flag] = (dtype, np.array(eval(values)))  # a list literal printed by the child
    assert out["0"][0] == "float32" and out["1"][0] == "float64"
    np.testing.assert_allclose(out["0"][1], out["1"][1], rtol=2e-7, atol=1e-7)


def test_random_bytes_and_a_directory_get_messages_that_say_what_they_are(tmp_path: Path) -> None:
    """Issue 25, bug 6: bytes named .npz got numpy's allow_pickle advice, a directory 'does not exist'."""
    junk = tmp_path / "junk.npz"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"not a \.npy or \.npz array file") as err:
        load_points(junk)
    assert "allow_pickle" not in str(err.value)
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load_points(folder)
