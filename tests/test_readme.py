"""The README's Python tour runs as written and its numbers are consistent."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.cli  # runs the public tour once, in the float32 pass
def test_readme_python_block_runs() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    n = namespace["x"].shape[0]
    assert namespace["K"].shape == namespace["Kinf"].shape == (n, n)
    assert namespace["Ks"].shape == (32, n, n)
    assert np.all(np.isfinite(jax.device_get(namespace["K"])))
