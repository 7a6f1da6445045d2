"""ntksim.nets.program_store: compiled eNTK programs kept by what they compute.

The reference for every number is the same computation with the store off (plain jit): a program
loaded from the store must give it bit for bit. Names must be equal for equal calls in separate
processes (or nothing is ever found) and differ whenever the program could."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim.activations import Activation
from ntksim.engine.compilation import CompileClock, disable_persistent_cache, enable_persistent_cache
from ntksim.nets import program_store
from ntksim.nets.empirical import _empirical_seeds, empirical_ntk_seeds
from ntksim.nets.program_store import describe_static, program_name


def _keys(count: int) -> jax.Array:
    return jnp.stack([jax.random.PRNGKey(s) for s in range(count)])


@pytest.fixture
def store(tmp_path: Path):
    """The persistent cache (and so the store) on in a fresh directory, this process's memory of
    loaded programs empty; off again afterwards."""
    program_store._loaded.clear()
    enable_persistent_cache(tmp_path / "cache")
    yield tmp_path / "cache" / program_store.STORE_DIRNAME
    program_store.flush()
    disable_persistent_cache()
    program_store._loaded.clear()


@pytest.fixture
def hits(monkeypatch) -> list[str]:
    """The store's hit events (JAX's persistent cache, which also holds the programs, has its own)."""
    seen: list[str] = []
    record = jax.monitoring.record_event

    def spy(event: str, **kwargs) -> None:
        if event == program_store.HIT_EVENT:
            seen.append(event)
        record(event, **kwargs)

    monkeypatch.setattr(jax.monitoring, "record_event", spy)
    return seen


def test_static_arguments_are_described_completely_or_not_at_all() -> None:
    relu = ntksim.MLP(ntksim.activation("relu"), depth=3, width=4)
    assert describe_static(relu) == describe_static(ntksim.MLP(ntksim.activation("relu"), depth=3, width=4))
    for other in (
        ntksim.MLP(ntksim.activation("abs"), depth=3, width=4),
        ntksim.MLP(ntksim.activation("relu"), depth=2, width=4),
        ntksim.MLP(ntksim.activation("relu"), depth=3, width=5),
        ntksim.MLP(ntksim.activation("relu"), depth=3, width=4, sigma_b=0.1),
        ntksim.MLP(ntksim.activation("relu"), depth=3, width=4, schedule="constant"),
        ntksim.MLP(ntksim.activation("relu"), depth=3, width=4, out_dim=2),
        ntksim.MLP(ntksim.activation("leaky_relu", alpha=0.1), depth=3, width=4),
    ):
        assert describe_static(other) != describe_static(relu)
    assert describe_static(ntksim.MLP(ntksim.activation("elu", alpha=0.5), depth=2, width=3)) != (
        describe_static(ntksim.MLP(ntksim.activation("elu", alpha=1.0), depth=2, width=3))
    )

    class Shifted(Activation):  # a subclass may compute something else under the same numbers
        def __call__(self, s):
            return super().__call__(s) + 1.0

    assert describe_static(ntksim.MLP(ntksim.activation(jnp.sin), depth=2, width=3)) is None
    assert describe_static(ntksim.MLP(Shifted(0.5, 0.5), depth=2, width=3)) is None
    assert describe_static(object()) is None


def test_a_name_changes_with_the_arrays_and_the_configuration() -> None:
    net = ntksim.MLP(ntksim.activation("relu"), depth=2, width=3)
    x = jnp.ones((4, 2))
    name = program_name(_empirical_seeds, ((net,), "structured", False), (_keys(2), x))
    assert name == program_name(_empirical_seeds, ((net,), "structured", False), (_keys(2), x))
    assert name != program_name(_empirical_seeds, ((net,), "structured", False), (_keys(3), x))
    assert name != program_name(_empirical_seeds, ((net,), "structured", False), (_keys(2), jnp.ones((5, 2))))
    assert name != program_name(_empirical_seeds, ((net,), "jacobian", False), (_keys(2), x))
    with jax.numpy_rank_promotion("warn" if jax.config.jax_numpy_rank_promotion != "warn" else "allow"):
        assert name != program_name(_empirical_seeds, ((net,), "structured", False), (_keys(2), x))
    import flax

    separator = flax.config.flax_fix_rng_separator
    flax.config.update("flax_fix_rng_separator", not separator)  # changes every parameter drawn
    try:
        assert name != program_name(_empirical_seeds, ((net,), "structured", False), (_keys(2), x))
    finally:
        flax.config.update("flax_fix_rng_separator", separator)


def _name_in_a_new_process(cache: Path, **variables: str) -> str:
    code = (
        "import jax, jax.numpy as jnp, ntksim;"
        "from ntksim.nets.program_store import program_name;"
        "from ntksim.nets.empirical import _empirical_seeds;"
        "from ntksim.engine.compilation import enable_persistent_cache;"
        f"enable_persistent_cache({str(cache)!r});"
        "net = ntksim.MLP(ntksim.activation('tanh'), depth=2, width=3);"
        "keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)]);"
        "print(program_name(_empirical_seeds, ((net,), 'structured', False), (keys, jnp.ones((4, 2)))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FLAX_"))}
    env.update(JAX_PLATFORMS="cpu", **variables)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_a_name_is_the_same_in_every_process_and_wherever_the_cache_is(tmp_path: Path) -> None:
    first, second = _name_in_a_new_process(tmp_path / "a"), _name_in_a_new_process(tmp_path / "b")
    assert len(first) == 64 and first == second
    # settings read when JAX or flax start, not visible in the call: x64, and flax's RNG
    # separator (it changes every parameter drawn)
    assert _name_in_a_new_process(tmp_path / "a", JAX_ENABLE_X64="1") != first
    assert _name_in_a_new_process(tmp_path / "a", FLAX_FIX_RNG_SEPARATOR="1") != first


def test_debugging_modes_and_transformations_never_use_the_store(store: Path) -> None:
    """Under disable_jit or debug_nans plain jit behaves differently from a compiled program (it
    runs op by op, or reruns to find the NaN), and under jit the enclosing trace compiles."""
    net = ntksim.MLP(ntksim.activation("relu"), depth=2, width=4)
    x = ntksim.sphere(jax.random.PRNGKey(4), n=4, dim=3)
    with jax.disable_jit():
        eager = np.asarray(empirical_ntk_seeds(net, _keys(2), x))
    with jax.debug_nans(True):
        checked = np.asarray(empirical_ntk_seeds(net, _keys(2), x))
    traced = np.asarray(jax.jit(lambda k, y: empirical_ntk_seeds(net, k, y))(_keys(2), x))
    program_store.flush()
    assert not store.exists() or not list(store.glob("*.bin"))
    direct = np.asarray(empirical_ntk_seeds(net, _keys(2), x))
    program_store.flush()
    assert len(list(store.glob("*.bin"))) == 1
    for other in (eager, checked, traced):  # op by op: round-off apart
        np.testing.assert_allclose(other, direct, rtol=0, atol=1e-5 * np.max(np.abs(direct)))


@pytest.mark.parametrize("traced", [False, True])
def test_a_stored_program_gives_the_numbers_of_plain_jit_bit_for_bit(store: Path, hits, traced: bool) -> None:
    net = ntksim.MLP(ntksim.activation("leaky_relu", alpha=0.2), depth=3, width=5, sigma_b=0.1)
    x = ntksim.sphere(jax.random.PRNGKey(1), n=6, dim=3)
    keys = _keys(4)
    disable_persistent_cache()
    plain = np.asarray(empirical_ntk_seeds(net, keys, x, traced=traced))
    enable_persistent_cache(store.parent)
    compiled = np.asarray(empirical_ntk_seeds(net, keys, x, traced=traced))
    program_store.flush()
    assert len(list(store.glob("*.bin"))) == 1
    assert hits == []
    program_store._loaded.clear()  # as a new process: load it from the store
    with CompileClock.measure() as clock:
        loaded = np.asarray(empirical_ntk_seeds(net, keys, x, traced=traced))
    assert hits == [program_store.HIT_EVENT] and clock.cache_hits == 1 and clock.cache_misses == 0
    np.testing.assert_array_equal(compiled, plain)
    np.testing.assert_array_equal(loaded, plain)


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_a_damaged_entry_is_compiled_again_and_replaced(store: Path, hits, damage: str) -> None:
    net = ntksim.MLP(ntksim.activation("abs"), depth=2, width=4)
    x = ntksim.sphere(jax.random.PRNGKey(2), n=5, dim=3)
    first = np.asarray(empirical_ntk_seeds(net, _keys(3), x))
    program_store.flush()
    (entry,) = store.glob("*.bin")
    data = bytearray(entry.read_bytes())
    if damage == "truncated":  # a writer that died half-way (renames make it rare)
        data = data[: len(data) // 2]
    else:  # caught by the entry's checksum before anything is unpickled
        data[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(data))
    program_store._loaded.clear()
    again = np.asarray(empirical_ntk_seeds(net, _keys(3), x))
    program_store.flush()
    np.testing.assert_array_equal(again, first)
    assert hits == []  # not loaded: compiled (JAX's own cache may have had it)
    assert entry.read_bytes() != bytes(data) and not list(store.glob(".*tmp"))


def test_a_users_own_activation_is_never_stored(store: Path) -> None:
    net = ntksim.MLP(ntksim.activation(lambda s: jnp.tanh(s) + 0.1 * s), depth=2, width=4, sigma_w=1.2)
    x = ntksim.sphere(jax.random.PRNGKey(3), n=4, dim=3)
    assert np.all(np.isfinite(np.asarray(empirical_ntk_seeds(net, _keys(2), x))))
    program_store.flush()
    assert not store.exists() or not list(store.glob("*.bin"))


_COMPUTE = """
import hashlib, sys, jax, jax.numpy as jnp, numpy as np, ntksim
from ntksim.nets import program_store
from ntksim.nets.empirical import empirical_ntk_seeds
from ntksim.engine.compilation import enable_persistent_cache
hits = []
record = jax.monitoring.record_event
jax.monitoring.record_event = lambda event, **kw: (hits.append(event), record(event, **kw))[1]
enable_persistent_cache(sys.argv[1])
keys = jnp.stack([jax.random.PRNGKey(s) for s in range(3)])
x = ntksim.sphere(jax.random.PRNGKey(0), n=5, dim=3)
digest = hashlib.sha256()
for traced in (False, True):
    net = ntksim.MLP(ntksim.activation("leaky_relu", alpha=0.3), depth=3, width=4, sigma_b=0.2)
    digest.update(np.asarray(empirical_ntk_seeds(net, keys, x, traced=traced)).tobytes())
print(hits.count(program_store.HIT_EVENT), digest.hexdigest())
"""


def test_a_second_process_loads_what_the_first_kept_at_its_exit(tmp_path: Path) -> None:
    """Process A computes (static and traced paths) and exits without flush(): Python waits for
    the background writes. Process B loads both programs and gets A's numbers bit for bit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FLAX_"))}
    env["JAX_PLATFORMS"] = "cpu"

    def run() -> list[str]:
        argv = [sys.executable, "-c", _COMPUTE, str(tmp_path / "cache")]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()

    first, second = run(), run()
    assert first[0] == "0" and second[0] == "2"
    assert second[1] == first[1]
