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


@pytest.mark.cli
def test_readme_any_activation_block_runs_and_its_numbers_hold() -> None:
    """The second block (it turns on x64) runs in a subprocess; its quoted EOC point holds."""
    import subprocess
    import sys

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    check = "\nprint(round(p.sigma_w, 5), round(p.q_star, 5), Kinf.shape, Ninf.shape, N.shape, mine.name)\n"
    proc = subprocess.run([sys.executable, "-c", block + check], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[:2] == ["1.30415", "0.51208"]
    assert "(64, 64) (64, 64) (64, 64) mine" in proc.stdout


@pytest.mark.cli
def test_readme_runs_from_python_block_runs_and_says_what_it_quotes(tmp_path: Path) -> None:
    """The fourth block: plan, run and status in a subprocess (x64 on, as every run), its output
    into tmp_path; the values its comments quote are the ones printed."""
    import subprocess
    import sys

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[3]
    quoted = [line.split("  # ")[1] for line in block.splitlines() if line.startswith("print(")]
    block = block.replace('"runs/notebook"', repr(str(tmp_path / "notebook")))
    proc = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=600, cwd=README.parent
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == quoted[0]
    assert quoted[1] in lines
    assert lines[-1].startswith(quoted[2].replace("runs/notebook", str(tmp_path / "notebook")).rstrip(" …"))


@pytest.mark.cli
def test_readme_finite_width_block_runs_and_its_numbers_hold() -> None:
    """The third block (x64 on) in a subprocess: the quoted per-layer shares and err_fro, and the
    1/√2 of doubled widths (every coefficient is width-free, so the variance halves)."""
    import subprocess
    import sys

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[2]
    check = (
        "\nprint(*np.round(fw.per_layer['fro_sq'], 3), round(fw.err_fro, 3), "
        "round(fw.at([128, 512]).err_fro / fw.err_fro * 2**0.5, 12), fw.covariance(0, 1).shape, "
        "small[0].entry_covariance().shape, small[1].kernel)\n"
    )
    proc = subprocess.run([sys.executable, "-c", block + check], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = ["0.736", "0.194", "0.964", "1.0", "(3,", "3)", "(12,", "12,", "12,", "12)", "nngp"]
    assert proc.stdout.split() == expected, proc.stdout


def test_nothing_shipped_points_outside_the_repository() -> None:
    """A clone has no shared folder beside it: the science and design documents live in docs/,
    and no tracked text file links outside the repository."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "science.md").is_file() and (root / "docs" / "design.md").is_file()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if name.endswith((".md", ".py", ".toml", ".yaml", ".cfg", ".txt")) and (root / name).is_file():
            assert "../" + "shared" not in (root / name).read_text(errors="ignore"), name
