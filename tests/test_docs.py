"""The README and docs/ as a user meets them: every Python block runs as written and prints
what its comments quote, every shell command names a real make target, file or ntksim flag, and
every relative link leads to a file of the repository."""

import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.markdown import has_row

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API = ROOT / "docs" / "python-api.md"
# the two documents copied from the project's specification: formulas and contracts, not a tour
SPECIFICATIONS = ("design.md", "science.md")
PAGES = [README, *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in SPECIFICATIONS)]


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)


def test_every_python_block_is_one_of_those_run_below() -> None:
    assert [len(_blocks(page, "python")) for page in PAGES if _blocks(page, "python")] == [1, 4, 3]
    assert [page.name for page in PAGES if _blocks(page, "python")] == [
        "README.md",
        "extending.md",
        "python-api.md",
    ]


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
    """The API page's first block (it turns on x64) runs in a subprocess; its quoted EOC point holds."""
    import subprocess
    import sys

    block = _blocks(API, "python")[0]
    check = "\nprint(round(p.sigma_w, 5), round(p.q_star, 5), Kinf.shape, Ninf.shape, N.shape, mine.name)\n"
    proc = subprocess.run([sys.executable, "-c", block + check], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[:2] == ["1.30415", "0.51208"]
    assert "(64, 64) (64, 64) (64, 64) mine" in proc.stdout


@pytest.mark.cli
def test_readme_runs_from_python_block_runs_and_says_what_it_quotes(tmp_path: Path) -> None:
    """The API page's third block: plan, run and status in a subprocess (x64 on, as every run), its output
    into tmp_path; the values its comments quote are the ones printed."""
    import subprocess
    import sys

    block = _blocks(API, "python")[2]
    quoted = [line.split("  # ")[1] for line in block.splitlines() if line.startswith("print(")]
    block = block.replace('"runs/notebook"', repr(str(tmp_path / "notebook")))
    proc = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == quoted[0]
    assert quoted[1] in lines
    assert lines[-1].startswith(quoted[2].replace("runs/notebook", str(tmp_path / "notebook")).rstrip(" …"))


@pytest.mark.cli
def test_readme_finite_width_block_runs_and_its_numbers_hold() -> None:
    """The API page's second block (x64 on) in a subprocess: the quoted per-layer shares and err_fro, and the
    1/√2 of doubled widths (every coefficient is width-free, so the variance halves)."""
    import subprocess
    import sys

    block = _blocks(API, "python")[1]
    check = (
        "\nprint(*np.round(fw.per_layer['fro_sq'], 3), round(fw.err_fro, 3), "
        "round(fw.at([128, 512]).err_fro / fw.err_fro * 2**0.5, 12), fw.covariance(0, 1).shape, "
        "small[0].entry_covariance().shape, small[1].kernel)\n"
    )
    proc = subprocess.run([sys.executable, "-c", block + check], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = ["0.736", "0.194", "0.964", "1.0", "(3,", "3)", "(12,", "12,", "12,", "12)", "nngp"]
    assert proc.stdout.split() == expected, proc.stdout


@pytest.mark.cli
def test_the_study_of_the_extending_page_runs_as_the_page_says(tmp_path: Path) -> None:
    """extending.md's Python blocks, joined, are the module my_lab/diagonal.py and its YAML block the
    config: `ntksim run` plans 6 cells, writes 24 rows, summary.md and the figure, the median error
    falls with m (about m^(−1/2): 16 → 256 divides it by ~4; asked here: by more than 2), and a
    second run finds every cell done."""
    import subprocess
    import sys

    import pandas as pd

    page = ROOT / "docs" / "extending.md"
    (tmp_path / "my_lab").mkdir()
    (tmp_path / "my_lab" / "__init__.py").write_text("")
    (tmp_path / "my_lab" / "diagonal.py").write_text("\n\n".join(_blocks(page, "python")))
    (tmp_path / "diagonal.yaml").write_text(_blocks(page, "yaml")[0])

    def ntksim(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        return subprocess.run(
            [sys.executable, "-m", "ntksim", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    plan = ntksim("run", "diagonal.yaml", "--out", "out", "--dry-run")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "6 cells: 0 done" in plan.stdout
    first = ntksim("run", "diagonal.yaml", "--out", "out")
    assert first.returncode == 0, first.stderr[-2000:]
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(table) == 24 and set(table["activation"]) == {"relu", "tanh"}
    assert (tmp_path / "out" / "figures" / "diagonal.png").is_file()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert (
        summary.startswith("# diagonal")
        and has_row(summary, "relu", "16")
        and has_row(summary, "tanh", "256")
    )
    medians = table.groupby(["activation", "width"])["max_rel_error"].median()
    for name in ("relu", "tanh"):
        assert medians[name, 256] < medians[name, 16] / 2, medians
    again = ntksim("run", "diagonal.yaml", "--out", "out")
    assert again.returncode == 0 and "6 done" in again.stdout + again.stderr, again.stdout


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


def _commands(page: Path) -> list[str]:
    """The commands of a page's sh blocks, comments and continuation lines joined."""
    out = []
    for block in _blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def test_every_shell_command_names_a_real_target_file_or_flag() -> None:
    """make targets exist in the Makefile, constraint files exist, and each `ntksim …` line that
    is not a synopsis (with [options] or a|b) parses with ntksim's own argument parser."""
    import shlex

    from ntksim.cli import _parser

    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    checked = 0
    for page in PAGES:
        for command in _commands(page):
            words = shlex.split(command)
            if words[0] == "make":
                assert set(words[1:2]) <= targets, (page.name, command)
            elif "pip" in words[0] and "-c" in words:
                assert (ROOT / words[words.index("-c") + 1]).is_file(), (page.name, command)
            elif words[0].endswith("ntksim") and not re.search(r"\[|\||\.\.\.|…", command):
                try:
                    args = _parser().parse_args(words[1:])
                except SystemExit as done:  # --version prints and leaves with 0
                    assert done.code == 0, command
                    checked += 1
                    continue
                if args.command == "run":
                    assert (ROOT / args.config).is_file() or args.config.name == "CONFIG.yaml", command
            else:
                continue
            checked += 1
    assert checked >= 10


def test_every_relative_link_leads_to_a_file() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#][^)]*)\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                path = (page.parent / target.split("#")[0]).resolve()
                assert path.exists(), (page.name, target)
