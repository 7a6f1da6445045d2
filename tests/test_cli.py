"""`ntksim run` and `ntksim plot` end to end, each in a subprocess.

A subprocess keeps the CLI's global `jax_enable_x64 = True` out of this test process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ntksim as ntksim_api
from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.kernels.limits import neural_tangents_available
from tests.conftest import without_scheduler
from tests.markdown import has_row, table_rows

pytestmark = pytest.mark.cli
REFERENCE = neural_tangents_available()

COLUMNS = [
    "activation",
    "a",
    "b",
    "depth",
    "width",
    "widths",
    "schedule",
    "n",
    "in_dim",
    "out_dim",
    "sigma_w",
    "sigma_b",
    "seed",
    "method",
    "err_op",
    "err_fro",
    "err_max",
    "rel_op",
    "kinf_op",
    "seconds",
]  # fmt: skip  (design.md, "results.csv")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "name": "tiny",
    "activations": ["relu", "abs"],
    "depths": [2],
    "widths": [8, 16],
    "seeds": 3,
    "data": {"n": 6, "dim": 4},
    "limit": {"backend": "closed_form"},
}


def ntksim(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m ntksim ARGS` in cwd; returns the finished process (never raises on exit code)."""
    env = without_scheduler(dict(os.environ))
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run(
        [sys.executable, "-m", "ntksim", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_config(path: Path, raw: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(TINY if raw is None else raw, sort_keys=False))
    return path


def assert_usage_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, exactly one non-empty stderr line mentioning every word, no traceback; returns it."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > len(PNG_MAGIC), path
    assert path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC, path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `ntksim run` of the tiny config (shared, read-only: copy it before changing anything)."""
    root = tmp_path_factory.mktemp("tiny_run")
    config = write_config(root / "tiny.yaml")
    proc = ntksim("run", config, "--out", "out", "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "4 cells done, 0 failed, 0 pending" in proc.stdout
    return root / "out"


# --- successful runs -------------------------------------------------------------------------------


def test_run_writes_results_config_summary_and_figures(tiny_run: Path) -> None:
    """results.csv has the design.md columns in order and one row per (activation, depth, width, seed);
    config.yaml re-validates to the run's settings; summary.md has a slope per activation; both
    figures are PNGs."""
    results = pd.read_csv(tiny_run / "results.csv")
    assert list(results.columns)[: len(COLUMNS)] == COLUMNS  # the contract; provenance follows
    assert list(results.columns)[len(COLUMNS) :] == [
        "kernel",
        "dtype",
        "limit_backend",
        "limit_version",
        "jax_version",
        "data",
    ]
    assert set(results["data"]) == {"sphere n=6 dim=4 seed=0"}  # which inputs, in every row
    assert set(results["limit_backend"]) == {"closed_form"} and set(results["dtype"]) == {"float32"}
    assert set(results["jax_version"]) == {importlib.metadata.version("jax")}
    assert set(results["limit_version"]) == {importlib.metadata.version("ntksim")}
    assert len(results) == 2 * 1 * 2 * 3
    assert not results.duplicated(["activation", "depth", "width", "seed"]).any()
    assert set(results["activation"]) == {"relu", "abs"}
    assert set(results["width"]) == {8, 16} and set(results["seed"]) == {0, 1, 2}
    assert (results["depth"] == 2).all() and (results["n"] == 6).all() and (results["in_dim"] == 4).all()
    assert (results["out_dim"] == 1).all() and (results["schedule"] == "quadratic").all()
    assert results[COLUMNS[14:]].notna().all().all()
    assert (results["err_op"] > 0).all() and (results["kinf_op"] > 0).all()

    resolved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert validate(resolved) == validate(TINY)
    assert resolved["limit"] == {"backend": "closed_form"} and resolved["seeds"] == 3

    summary = (tiny_run / "summary.md").read_text()
    assert summary.startswith("# tiny")
    for name in ("relu", "abs"):
        (row,) = [row for row in table_rows(summary) if row[:4] == [name, "ntk", "2", "1"]]
        float(row[4])  # the slope is a number

    assert sorted(p.name for p in (tiny_run / "figures").iterdir()) == [
        "err_op_depth2.png",
        "theory_prefactor.png",
    ]
    for name in ("err_op_depth2.png", "theory_prefactor.png"):
        assert_png(tiny_run / "figures" / name)


def test_set_overrides_change_the_run(tmp_path: Path) -> None:
    """`--set data.n=5 --set widths=[4,8]` reaches the results and the written config."""
    config = write_config(tmp_path / "tiny.yaml")
    proc = ntksim(
        "run", config, "--out", "out", "--set", "data.n=5", "--set", "widths=[4,8]", "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (results["n"] == 5).all()
    assert sorted(results["width"].unique()) == [4, 8]
    assert len(results) == 2 * 2 * 3
    resolved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert resolved["data"]["n"] == 5 and resolved["widths"] == [4, 8]
    assert yaml.safe_load(config.read_text()) == TINY  # the config file itself is untouched


@pytest.mark.slow
@pytest.mark.reference
def test_neural_tangents_backend_agrees_with_closed_form(tmp_path: Path, tiny_run: Path) -> None:
    """The same sweep with `--set limit.backend=neural_tangents` gives the same K∞ and errors."""
    config = write_config(tmp_path / "tiny.yaml")
    proc = ntksim(
        "run", config, "--out", "out", "--set", "limit.backend=neural_tangents", "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    nt = pd.read_csv(tmp_path / "out" / "results.csv")
    closed = pd.read_csv(tiny_run / "results.csv")
    assert set(nt["limit_backend"]) == {"neural_tangents"} and set(closed["limit_backend"]) == {"closed_form"}
    assert set(nt["limit_version"]) == {"0.6.5"}
    same = ["seconds", "limit_backend", "limit_version"]
    pd.testing.assert_frame_equal(
        nt.drop(columns=same), closed.drop(columns=same), check_exact=False, rtol=1e-6
    )


def test_plot_redraws_figures(tmp_path: Path, tiny_run: Path) -> None:
    """`ntksim plot DIR` on a stored run whose figures/ was deleted recreates every figure."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "figures")
    proc = ntksim("plot", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("err_op_depth2.png", "theory_prefactor.png"):
        assert_png(run / "figures" / name)


def test_plot_without_results(tmp_path: Path) -> None:
    """`ntksim plot` on a directory with no results.csv: exit 2, one line, nothing written."""
    (tmp_path / "empty").mkdir()
    assert_usage_error(ntksim("plot", "empty", cwd=tmp_path), "results.csv")
    assert list((tmp_path / "empty").iterdir()) == []


def test_plot_with_missing_columns(tmp_path: Path, tiny_run: Path) -> None:
    """A results.csv lacking required columns: exit 2, one line naming them, no figures."""
    run = tmp_path / "run"
    run.mkdir()
    pd.read_csv(tiny_run / "results.csv").drop(columns=["err_op", "kinf_op"]).to_csv(
        run / "results.csv", index=False
    )
    assert_usage_error(ntksim("plot", run, cwd=tmp_path), "err_op", "kinf_op")
    assert not (run / "figures").exists()


# --- bad input: exit 2, one line on stderr, nothing written ------------------------------------------

BAD_INPUTS = [
    pytest.param(None, [], ["nope.yaml"], id="unreadable-file"),
    pytest.param("activations: [relu\ndepths: [2]\n", [], ["malformed YAML", "line 2"], id="malformed-yaml"),
    pytest.param({**TINY, "bogus": 1}, [], ["bogus"], id="unknown-key"),
    pytest.param({**TINY, "data": {"n": 6, "nn": 4}}, [], ["data.nn"], id="unknown-nested-key"),
    pytest.param({**TINY, "depths": [2.5]}, [], ["depths.0"], id="wrong-type"),
    pytest.param({**TINY, "widths": [16, 0]}, [], ["widths.1"], id="non-positive-width"),
    pytest.param(
        {**TINY, "activations": ["relu", "swoosh"]}, [], ["activations.1", "swoosh"], id="unknown-act"
    ),
    pytest.param(TINY, ["--set", "data.nn=3"], ["data.nn"], id="set-unknown-key"),
    pytest.param(TINY, ["--set", "widths=[4,-8]"], ["widths.1"], id="set-bad-value"),
    pytest.param(
        {**TINY, "data": {"kind": "file", "path": "missing.npy"}},
        [],
        ["data.path", "missing.npy"],
        id="no-data",
    ),
    pytest.param(
        b"activations: [relu]\n\xff\xfe\n",
        [],
        ["nope.yaml"],
        id="non-utf8-file",
    ),
    pytest.param(
        {**TINY, "data": {"kind": "file", "path": "corrupt.npz"}},
        [],
        ["data.path", "corrupt.npz"],
        id="corrupt-npz",
    ),
    pytest.param(TINY, ["--executor", "bogus"], ["--executor", "bogus"], id="unknown-executor"),
    pytest.param(TINY, ["--executor", "slurm"], ["--executor slurm", "sbatch"], id="slurm-without-sbatch"),
]


@pytest.mark.parametrize(("config", "extra", "words"), BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, config: bytes | str | dict | None, extra: list[str], words: list[str]
) -> None:
    """Each user mistake: exit 2, one stderr line naming the key path, no traceback, no --out dir."""
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")  # a data file that is not a zip
    path = tmp_path / "nope.yaml"
    if isinstance(config, bytes):
        path.write_bytes(config)
    elif isinstance(config, str):
        path.write_text(config)
    elif isinstance(config, dict):
        write_config(path, config)
    proc = ntksim("run", path, "--out", "out", "--no-progress", *extra, cwd=tmp_path)
    assert_usage_error(proc, *words)
    assert not (tmp_path / "out").exists()
    assert proc.stdout == ""


def test_tests_never_reach_a_real_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SLURM's client on PATH (a login node), the 'slurm without sbatch' case must still see
    none, and nothing may be submitted."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    marker = tmp_path / "submitted"
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).write_text(f"#!/bin/sh\ntouch {marker}\necho 'Submitted batch job 1'\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = write_config(tmp_path / "tiny.yaml")
    proc = ntksim("run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path)
    assert_usage_error(proc, "--executor slurm", "sbatch")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_foreign_results_need_force(tmp_path: Path) -> None:
    """--out holding a results.csv that no ntksim run wrote: exit 2, directory left exactly as it was."""
    config = write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("keep me\n")
    proc = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert_usage_error(proc, "results.csv", "--force")
    assert (out / "results.csv").read_text() == "keep me\n"
    assert [p.name for p in out.iterdir()] == ["results.csv"]


def test_unwritable_out_is_one_line_error(tmp_path: Path) -> None:
    """--out below a regular file cannot be created: exit 2 and one line, not a traceback."""
    config = write_config(tmp_path / "tiny.yaml")
    (tmp_path / "afile").write_text("not a directory\n")
    proc = ntksim("run", config, "--out", tmp_path / "afile" / "sub", "--no-progress", cwd=tmp_path)
    assert_usage_error(proc, "--out", "cannot write")


def test_directory_another_run_is_setting_up_is_joined(tmp_path: Path) -> None:
    """The concurrent-start race: another run has created --out and is writing config.yaml (its
    temp file is there, the name not yet). This run must join it, not call it foreign."""
    config = write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    (out / ".lock").touch()
    (out / f".config.yaml.{socket.gethostname()}.1.1.tmp").write_text("name: half-written\n")
    proc = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(out / "results.csv")) == 12


@pytest.mark.skipif(REFERENCE, reason="checks the current profile, where neural-tangents is absent")
def test_neural_tangents_backend_in_the_current_profile_says_how_to_get_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tiny.yaml")
    proc = ntksim("run", config, "--out", "out", "--set", "limit.backend=neural_tangents", cwd=tmp_path)
    assert_usage_error(proc, "limit.backend", "reference profile", "make install-reference")
    assert not (tmp_path / "out").exists()


PROBE = """
import sys
import jax
import ntksim
from ntksim.cli import main
x = ntksim.sphere(jax.random.PRNGKey(0), 4, 3)
net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=4)
ntksim.limit_ntk(net, x)
try:
    main(["run", sys.argv[1], "--out", sys.argv[2], "--no-progress"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "neural_tangents")))
"""


def test_ntksim_never_imports_tensorflow_or_neural_tangents_unless_asked(tmp_path: Path) -> None:
    """The API's defaults and a whole closed-form sweep import neither (in either profile), and
    the current profile does not even install them."""
    config = write_config(tmp_path / "tiny.yaml")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-c", PROBE, str(config), str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    if not REFERENCE:
        assert importlib.util.find_spec("tensorflow") is None
        assert importlib.util.find_spec("neural_tangents") is None


def test_eoc_command_prints_the_table_and_draws_the_phase_diagram(tmp_path: Path) -> None:
    proc = ntksim("eoc", "tanh", "elu(0.5)", "--sigma-b", "0.2", "--out", "eoc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert has_row(proc.stdout, "tanh", "0.2", "1.30415", "0.512079")
    table = pd.read_csv(tmp_path / "eoc" / "eoc.csv")
    assert list(table["activation"]) == ["tanh", "elu(0.5)"]
    curves = pd.read_csv(tmp_path / "eoc" / "eoc_curves.csv")
    assert set(curves["activation"]) == {"tanh", "elu(0.5)"} and len(curves) == 2 * 81
    assert_png(tmp_path / "eoc" / "phase_diagram.png")


def test_figures_in_vector_formats_for_papers(tmp_path: Path) -> None:
    """Issue 25: `--format pdf` (and svg, or several): each figure in every format asked for, the
    PNG of `--format pdf,png` byte for byte that of a plain run, the PDF free of creation dates
    (two runs, one file), and a format that is none a one-line usage error."""
    config = write_config(tmp_path / "tiny.yaml")
    plain = ntksim("run", config, "--out", "plain", "--no-progress", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    both = ntksim("run", config, "--out", "both", "--no-progress", "--format", "pdf,png", cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    pngs = sorted(p.name for p in (tmp_path / "plain" / "figures").iterdir())
    assert pngs and all(name.endswith(".png") for name in pngs)
    written = sorted(p.name for p in (tmp_path / "both" / "figures").iterdir())
    assert written == sorted(pngs + [name.replace(".png", ".pdf") for name in pngs])
    for name in pngs:
        assert (tmp_path / "both" / "figures" / name).read_bytes() == (
            tmp_path / "plain" / "figures" / name
        ).read_bytes()
        pdf = (tmp_path / "both" / "figures" / name.replace(".png", ".pdf")).read_bytes()
        assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    redrawn = ntksim("plot", tmp_path / "plain", "--format", "svg", cwd=tmp_path)
    assert redrawn.returncode == 0, redrawn.stderr
    assert {p.suffix for p in (tmp_path / "plain" / "figures").iterdir()} == {".png", ".svg"}
    eoc = ntksim("eoc", "tanh", "--out", "eoc", "--format", "pdf", cwd=tmp_path)
    assert eoc.returncode == 0 and (tmp_path / "eoc" / "phase_diagram.pdf").is_file(), eoc.stderr
    assert not (tmp_path / "eoc" / "phase_diagram.png").exists()
    assert_usage_error(ntksim("eoc", "tanh", "--out", "x", "--format", "jpg", cwd=tmp_path), "jpg", "pdf")


@pytest.mark.parametrize(
    ("args", "words"),
    [(["gelu", "--sigma-b", "0"], ["gelu", "sigma_b=0", "Edge-of-Chaos"]),
     (["swoosh"], ["unknown activation", "swoosh"]),
     (["elu(x)"], ["elu(x)", "alpha"]),
     (["tanh", "--sigma-b", "-1"], ["--sigma-b", "non-negative"]),
     (["tanh", "--sigma-b", "1e300"], ["sigma_b=1e+300", "beyond the EOC search"]),  # was OverflowError
     (["monomial(100000)"], ["degree 100000", "above 32"]),  # was minutes of silence
     (["gelu", "--sigma-b", "0.1"], ["no stable", "slope"])],
)  # fmt: skip
def test_eoc_command_bad_input_is_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    assert_usage_error(ntksim("eoc", *args, "--out", "eoc", cwd=tmp_path), *words)
    assert not (tmp_path / "eoc").exists()


def test_any_activation_and_the_nngp_run_from_yaml(tmp_path: Path) -> None:
    """tanh and ELU(0.5) at their EOC for σ_b = 0.2, limits by quadrature, the NNGP: a full run."""
    raw = {**TINY, "activations": ["tanh", {"preset": "elu", "alpha": 0.5}], "sigma_b": 0.2,
           "kernel": "nngp", "limit": {"backend": "auto"}}  # fmt: skip
    config = write_config(tmp_path / "any.yaml", raw)
    proc = ntksim("run", config, "--out", "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["activation"]) == {"tanh", "elu(0.5)"} and set(results["kernel"]) == {"nngp"}
    assert set(results["limit_backend"]) == {"quadrature"} and results[["a", "b"]].isna().all().all()
    assert (results[results["activation"] == "tanh"]["sigma_w"].round(5) == 1.30415).all()
    assert results[results["activation"] == "elu(0.5)"]["sigma_w"].nunique() == 1
    assert (results["err_op"] > 0).all()
    assert has_row((tmp_path / "out" / "summary.md").read_text(), "tanh", "nngp")


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_dry_run_piped_into_a_closed_reader_ends_quietly(tmp_path: Path, reader: str) -> None:
    """`ntksim run … --dry-run | head -1`: the reader closes the pipe (`true` before anything is
    written, so the write certainly fails); no BrokenPipeError traceback, exit 0."""
    config = write_config(tmp_path / "tiny.yaml")
    env = without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu"))
    cmd = f"'{sys.executable}' -m ntksim run '{config}' --out out --dry-run | {reader}"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in proc.stderr and "Broken" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_a_setting_listed_twice_is_one_cell(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dup.yaml", {**TINY, "activations": ["relu", "relu"]})
    proc = ntksim("run", config, "--out", "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = len(table) // TINY["seeds"]
    assert f"{cells} cells: 0 done" in proc.stdout and f"{cells} cells done" in proc.stdout


def test_version_names_ntksim_and_jax(tmp_path: Path) -> None:
    proc = ntksim("--version", cwd=tmp_path)
    assert proc.returncode == 0 and re.fullmatch(r"ntksim \S+ \(jax \S+\)\n", proc.stdout), proc.stdout


def test_a_log_gets_a_line_per_cell_not_silence(tmp_path: Path) -> None:
    """Output to a file or pipe (cluster logs, --executor local): no bar, one progress line per
    cell with its count and an ETA; --no-progress silences them."""
    config = write_config(tmp_path / "c.yaml")
    proc = ntksim("run", config, "--out", tmp_path / "a", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ntksim: [")]
    assert len(lines) == 4 and lines[0].startswith("ntksim: [1/4] ") and "ETA" in lines[0], proc.stderr
    quiet = ntksim("run", config, "--out", tmp_path / "b", "--no-progress", cwd=tmp_path)
    assert quiet.returncode == 0 and "ntksim: [" not in quiet.stderr


def test_load_run_and_fits_csv_for_notebooks(tiny_run: Path) -> None:
    """ntksim.load_run(DIR) gives the table, the config and the fitted slopes; fits.csv holds the
    same slopes as summary.md, refitted here independently from results.csv."""
    run = ntksim_api.load_run(tiny_run)
    table = pd.read_csv(tiny_run / "results.csv")
    pd.testing.assert_frame_equal(run.table, table)
    assert run.config.name == "tiny" and run.config.study == "concentration"
    fits = pd.read_csv(tiny_run / "fits.csv")
    assert set(fits["activation"]) == {"relu", "abs"} and {"slope", "ci_low", "ci_high"} <= set(fits.columns)
    for row in fits.itertuples():
        sub = table[table["activation"] == row.activation]
        medians = sub.groupby("width")["err_op"].median()
        slope = np.polyfit(np.log2(medians.index.to_numpy(float)), np.log2(medians.to_numpy()), 1)[0]
        assert row.slope == pytest.approx(slope, rel=1e-9)
        assert f"{row.slope:.3f}" in (tiny_run / "summary.md").read_text()
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        ntksim_api.load_run(tiny_run.parent / "nowhere")


def test_status_and_plot_find_a_relative_data_file_from_any_directory(tmp_path: Path) -> None:
    """A config with `data.path: points.npy` run from its own directory: `status` and `plot` of
    that run from another directory read the file relative to where the run started."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    np.save(project / "points.npy", rng.normal(size=(6, 4)))
    raw = {**TINY, "widths": [8], "data": {"kind": "file", "path": "points.npy"}}
    config = write_config(project / "c.yaml", raw)
    proc = ntksim("run", config, "--out", "out", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    np.save(elsewhere / "points.npy", rng.normal(size=(6, 4)))  # another file of the same name here
    status = ntksim("status", project / "out", cwd=elsewhere)
    assert status.returncode == 0 and "2 cells done, 0 failed, 0 pending" in status.stdout, status.stderr
    plot = ntksim("plot", project / "out", cwd=elsewhere)
    assert plot.returncode == 0, plot.stderr
    again = ntksim("run", config, "--out", "out", "--no-progress", cwd=project)  # config hash unchanged
    assert again.returncode == 0 and " 0 to run" in again.stdout, again.stdout + again.stderr


def test_run_json_keeps_every_invocation_and_tasks_record_where_they_ran(tmp_path: Path) -> None:
    """A no-op re-run no longer erases the record of the compute that made the results: it moves
    into `history`; each executor task writes tasks/<job id>.json (host, devices, job id, counts)."""
    config = write_config(tmp_path / "c.yaml")
    first = ntksim("run", config, "--out", "out", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["to_run"] == 4 and record["history"] == [] and record["finished"]
    again = ntksim("run", config, "--out", "out", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0
    latest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert latest["to_run"] == 0 and latest["done_before"] == 4
    assert [h["started"] for h in latest["history"]] == [record["started"]] and latest["history"][0][
        "to_run"
    ] == 4
    local = ntksim("run", config, "--out", "loc", "--executor", "local", "--no-progress", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    tasks = sorted((tmp_path / "loc" / "tasks").glob("*.json"))
    attempts = [a for path in tasks for a in json.loads(path.read_text())]
    assert tasks and sum(a["computed"] for a in attempts) == 4
    assert all(a["host"] and a["devices"] and a["job_id"] for a in attempts)


def test_plot_reads_a_results_csv_with_only_the_original_columns(tmp_path: Path, tiny_run: Path) -> None:
    """A results.csv copied from elsewhere and older than every provenance column still plots."""
    copy = tmp_path / "copied"
    copy.mkdir()
    pd.read_csv(tiny_run / "results.csv")[COLUMNS].to_csv(copy / "results.csv", index=False)
    proc = ntksim("plot", copy, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "figures" / "err_op_depth2.png").exists()
