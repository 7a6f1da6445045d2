"""ntksim.config: validation of plain-data configs, `--set` overrides, YAML reading."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ntksim.activations import Activation
from ntksim.engine.config import ConfigError, read_yaml
from ntksim.engine.loading import apply_overrides, load, validate
from ntksim.studies.concentration import Config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

BASE: dict[str, Any] = {"activations": ["relu"], "depths": [2], "widths": [16]}


def with_(**changes: Any) -> dict[str, Any]:
    """BASE with some keys replaced (a fresh copy, so tests never share nested state)."""
    return copy.deepcopy({**BASE, **changes})


def assert_one_line_error(err: pytest.ExceptionInfo[ConfigError], prefix: str) -> str:
    """The ConfigError's message is one non-empty line starting with `prefix:`; returns it."""
    message = str(err.value)
    assert message.strip() and "\n" not in message, message
    assert message.startswith(f"{prefix}:"), message
    return message


# --- valid configs ------------------------------------------------------------------------------


def test_minimal_config_fills_defaults() -> None:
    """The three required keys suffice; everything else takes its documented default."""
    config = validate(with_())
    assert isinstance(config, Config)
    assert config.depths == [2] and config.widths == [16]
    assert config.schedule == "quadratic" and config.seeds == 8 and config.out_dims == [1]
    assert config.data.kind == "sphere" and config.ntk.method == "structured"
    assert config.limit.backend == "auto"  # closed form for the family, quadrature otherwise
    assert config.sigma_w is None and config.sigma_b is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("relu", Activation(0.5, 0.5, "relu")),
        ("abs", Activation(0.0, 1.0, "abs")),
        ("linear", Activation(1.0, 0.0, "linear")),
        ("leaky_relu", Activation.preset("leaky_relu")),
        ("leaky_relu(0.1)", Activation(0.55, 0.45, "leaky_relu(0.1)")),
        ({"preset": "leaky_relu", "alpha": 0.1}, Activation(0.55, 0.45, "leaky_relu(0.1)")),
        ({"preset": "leaky_relu", "alpha": 0.0}, Activation(0.5, 0.5, "leaky_relu(0)")),
        ({"a": 0.3, "b": 0.7}, Activation(0.3, 0.7)),
        ({"a": 0.3, "b": 0.7, "name": "mine"}, Activation(0.3, 0.7, "mine")),
        ({"preset": "relu", "name": "R"}, Activation(0.5, 0.5, "R")),
    ],
)
def test_activation_spellings(spec: str | dict, expected: Activation) -> None:
    """Every documented activation spelling builds the intended (a, b, name)."""
    (act,) = validate(with_(activations=[spec])).activation_objects()
    assert act.name == expected.name
    assert act.a == pytest.approx(expected.a, abs=1e-15) and act.b == pytest.approx(expected.b, abs=1e-15)


def test_scalars_are_coerced_to_lists() -> None:
    """A bare activation, depth or width means a one-element sweep."""
    config = validate({"activations": "abs", "depths": 3, "widths": 32})
    assert config.depths == [3] and config.widths == [32]
    assert [a.name for a in config.activation_objects()] == ["abs"]
    single = validate(with_(activations={"a": 1.0, "b": 0.5}))
    assert [(a.a, a.b) for a in single.activation_objects()] == [(1.0, 0.5)]


def test_explicit_schedule_without_widths() -> None:
    """An explicit schedule replaces widths; its length must be depth - 1 for every depth."""
    config = validate({"activations": ["relu"], "depths": [3], "schedule": [4, 9]})
    assert config.schedule == [4, 9] and config.widths is None and config.width_values == [None]


# --- bad configs: ConfigError, one line, starting with the key path -----------------------------

BAD_CONFIGS = [
    pytest.param(with_(bogus=1), "bogus", id="unknown-top-level-key"),
    pytest.param(with_(data={"bogus": 1}), "data.bogus", id="unknown-nested-key"),
    pytest.param(with_(depths=[2.5]), "depths.0", id="non-integer-depth"),
    pytest.param(with_(depths=["2"]), "depths.0", id="string-depth"),
    pytest.param(with_(widths=[16, 0]), "widths.1", id="zero-width"),
    pytest.param(with_(widths=[-4]), "widths.0", id="negative-width"),
    pytest.param(with_(seeds=0), "seeds", id="zero-seeds"),
    pytest.param(with_(activations=["swoosh"]), "activations.0", id="unknown-activation"),
    pytest.param(with_(activations=["gelu"]), "activations.0", id="no-eoc-point-at-sigma-b-0"),
    pytest.param(
        with_(activations=[{"preset": "elu", "degree": 2}]), "activations.0", id="unknown-parameter"
    ),
    pytest.param(with_(activations=["monomial(2.5)"]), "activations.0", id="non-integer-degree"),
    pytest.param(with_(activations=["relu", {"a": 0, "b": 0}]), "activations.1", id="a-b-zero"),
    pytest.param(with_(activations=["leaky_relu(1.5)"]), "activations.0", id="leaky-alpha-above-1"),
    pytest.param(
        with_(activations=[{"preset": "leaky_relu", "alpha": 1.0}]), "activations.0", id="leaky-alpha-1"
    ),
    pytest.param(
        with_(activations=[{"preset": "leaky_relu", "alpha": -0.1}]), "activations.0", id="leaky-alpha-neg"
    ),
    pytest.param(
        with_(activations=[{"preset": "relu", "alpha": 0.1}]), "activations.0", id="alpha-not-leaky"
    ),
    pytest.param(with_(activations=[{"preset": "relu", "a": 1.0}]), "activations.0", id="preset-and-a"),
    pytest.param(with_(activations=[{"b": 1.0}]), "activations.0", id="b-without-a"),
    pytest.param(with_(activations=[]), "activations", id="no-activations"),
    pytest.param(with_(data={"kind": "file"}), "data.path", id="file-without-path"),
    pytest.param(with_(data={"kind": "sphere", "path": "x.npy"}), "data.path", id="path-without-file"),
    pytest.param(with_(ntk={"method": "exact"}), "ntk.method", id="unknown-ntk-method"),
    pytest.param(with_(sigma_w=-1.0), "sigma_w", id="negative-sigma-w"),
    pytest.param(with_(sigma_w=0.0), "sigma_w", id="zero-sigma-w"),
    pytest.param(with_(sigma_b=-0.5), "sigma_b", id="negative-sigma-b"),
    pytest.param(with_(sigma_w=True), "sigma_w", id="bool-sigma-w"),
    pytest.param(with_(sigma_w="1.5"), "sigma_w", id="string-sigma-w"),
    pytest.param(with_(activations=[{"a": True, "b": 1.0}]), "activations.0.a", id="bool-a"),
    pytest.param(with_(data={"seed": True}), "data.seed", id="bool-data-seed"),
    pytest.param(with_(data={"seed": 2**64}), "data.seed", id="huge-data-seed"),
    pytest.param(with_(seed_offset=2**31 - 2, seeds=4), "seed_offset", id="seeds-past-32-bits"),
    pytest.param(
        {"activations": ["relu"], "depths": [2]},
        "widths",
        id="widths-missing",
    ),
    pytest.param({"depths": [2], "widths": [16]}, "activations", id="activations-missing"),
    pytest.param(
        {"activations": ["relu"], "depths": [3], "schedule": [4]},
        "schedule",
        id="explicit-schedule-wrong-length",
    ),
    pytest.param(
        {"activations": ["relu"], "depths": [3], "schedule": [4, 9], "widths": [16]},
        "widths",
        id="widths-with-explicit-schedule",
    ),
    pytest.param(
        with_(out_dim=0),
        "out_dim",
        id="zero-out-dim",
    ),
    pytest.param(
        with_(schedule="cubic"),
        "schedule",
        id="unknown-schedule",
    ),
]


@pytest.mark.parametrize(("raw", "path"), BAD_CONFIGS)
def test_bad_config_raises_one_line_error_naming_the_key(raw: dict[str, Any], path: str) -> None:
    """Each mistake is a ConfigError whose single-line message starts with the key path."""
    with pytest.raises(ConfigError) as err:
        validate(raw)
    assert_one_line_error(err, path)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ({"activations": ["relu"], "depths": [2, 3], "schedule": [4]}, "schedule"),
        ({"activations": ["relu"], "depths": [3], "schedule": [4, 9], "widths": [16]}, "widths"),
        ({"activations": ["relu"], "depths": [2]}, "widths"),
        (with_(out_dim=[1, 0]), "out_dim"),
    ],
)
def test_model_level_errors_still_name_the_key(raw: dict[str, Any], word: str) -> None:
    """Cross-field mistakes are one-line ConfigErrors that at least mention the offending key."""
    with pytest.raises(ConfigError) as err:
        validate(raw)
    message = str(err.value)
    assert "\n" not in message and word in message, message


def test_error_counts_further_problems() -> None:
    """Several mistakes still give one line: the first, plus how many more."""
    with pytest.raises(ConfigError) as err:
        validate(with_(widths=[0, 0, 0]))
    message = assert_one_line_error(err, "widths.0")
    assert "2 more problems" in message


def test_top_level_must_be_a_mapping() -> None:
    """validate() refuses a list (or any non-mapping) with a one-line error."""
    with pytest.raises(ConfigError) as err:
        validate([1, 2])  # type: ignore[arg-type]
    assert_one_line_error(err, "config")


def test_config_error_is_a_value_error() -> None:
    """Callers that catch ValueError also catch config mistakes."""
    assert issubclass(ConfigError, ValueError)


# --- --set overrides -----------------------------------------------------------------------------


def test_overrides_take_effect_without_mutating_input() -> None:
    """Dotted keys and YAML values are applied to a copy; the caller's mapping is untouched."""
    raw = with_(data={"n": 6, "dim": 4})
    before = copy.deepcopy(raw)
    out = apply_overrides(
        raw, ["data.n=64", "widths=[64,256]", "ntk.method=jacobian", "limit.backend=closed_form"]
    )
    assert raw == before
    assert out["data"] == {"n": 64, "dim": 4}
    assert out["widths"] == [64, 256]
    assert out["ntk"] == {"method": "jacobian"}
    config = validate(out)
    assert config.data.n == 64 and config.data.dim == 4 and config.widths == [64, 256]
    assert config.ntk.method == "jacobian" and config.limit.backend == "closed_form"


def test_override_value_is_parsed_as_yaml() -> None:
    """Values are YAML: numbers, null, lists and mappings arrive typed; the last --set wins."""
    out = apply_overrides(with_(), ["sigma_w=1.5", "sigma_b=null", "seeds=3", "seeds=4", "name=run a"])
    assert out["sigma_w"] == 1.5 and out["sigma_b"] is None and out["seeds"] == 4
    assert out["name"] == "run a"
    config = validate(apply_overrides(with_(), ["activations=[relu, {preset: leaky_relu, alpha: 0.2}]"]))
    assert [a.name for a in config.activation_objects()] == ["relu", "leaky_relu(0.2)"]


def test_no_overrides_is_an_equal_copy() -> None:
    """An empty override list returns an equal but distinct mapping."""
    raw = with_(data={"n": 6})
    out = apply_overrides(raw, [])
    assert out == raw and out is not raw and out["data"] is not raw["data"]


@pytest.mark.parametrize(
    ("item", "prefix"),
    [
        ("data.nn=3", "--set data.nn"),
        ("bogus=1", "--set bogus"),
        ("data.n.x=3", "--set data.n.x"),
        ("widths.0=3", "--set widths.0"),
        ("datan", "--set 'datan'"),
        ("=3", "--set '=3'"),
        ("data.n=[1", "--set data.n"),
    ],
)
def test_bad_override_raises_one_line_error(item: str, prefix: str) -> None:
    """A key that does not exist, a missing '=' or an invalid YAML value is a one-line ConfigError."""
    with pytest.raises(ConfigError) as err:
        apply_overrides(with_(), [item])
    assert_one_line_error(err, prefix)


# --- YAML files -----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_yaml_returns_the_mapping(tmp_path: Path) -> None:
    """A well-formed file gives its top-level mapping as plain data."""
    path = write(tmp_path / "c.yaml", "activations: [relu, abs]\ndepths: 3\nwidths: [8, 16]\n")
    assert read_yaml(path) == {"activations": ["relu", "abs"], "depths": 3, "widths": [8, 16]}
    assert read_yaml(str(path)) == read_yaml(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("activations: [relu\ndepths: 2\n", ["malformed YAML", "line 2"]),
        ("a:\n\t- 1\n", ["malformed YAML", "line 2"]),
        ("", ["empty"]),
        ("# only a comment\n", ["empty"]),
        ("- relu\n- abs\n", ["mapping"]),
        ("just a string\n", ["mapping"]),
    ],
    ids=["unclosed-bracket", "tab", "empty", "comment-only", "list", "scalar"],
)
def test_read_yaml_bad_files(tmp_path: Path, text: str, words: list[str]) -> None:
    """Malformed, empty or non-mapping files are one-line ConfigErrors starting with the path."""
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    message = assert_one_line_error(err, str(path))
    for word in words:
        assert word in message


@pytest.mark.parametrize("name", ["missing.yaml", "."], ids=["nonexistent", "directory"])
def test_read_yaml_unreadable_path(tmp_path: Path, name: str) -> None:
    """A path that cannot be read as a file is a one-line ConfigError naming it."""
    path = tmp_path / name
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert "cannot read" in assert_one_line_error(err, str(path))


def test_read_yaml_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not text is a one-line ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"activations: [relu]\n\xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert_one_line_error(err, str(path))


def test_load_validates_overrides_and_resolves(tmp_path: Path) -> None:
    """load() = read + --set + validate; the resolved mapping has defaults and re-validates equal."""
    path = write(
        tmp_path / "c.yaml",
        "name: demo\nactivations: [relu, 'leaky_relu(0.1)', {a: 0.3, b: 0.7}]\ndepths: 2\nwidths: [8]\n",
    )
    config, resolved = load(path, ["data.n=5", "widths=[4, 8]"])
    assert config.data.n == 5 and config.widths == [4, 8] and config.name == "demo"
    assert resolved["seeds"] == 8 and resolved["data"]["kind"] == "sphere"
    assert resolved["ntk"] == {"method": "structured", "dtype": "float32"}
    assert "sigma_w" not in resolved  # null (the Edge of Chaos) is left out
    assert validate(resolved) == config
    assert load(path)[0].widths == [8]


def test_load_reports_validation_and_override_errors(tmp_path: Path) -> None:
    """load() surfaces both validation and --set mistakes as one-line ConfigErrors."""
    path = write(tmp_path / "c.yaml", "activations: [relu]\ndepths: [2]\nwidths: [16, 0]\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert_one_line_error(err, "widths.1")
    with pytest.raises(ConfigError) as err:
        load(path, ["data.nn=3"])
    assert_one_line_error(err, "--set data.nn")
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "nope.yaml")
    assert_one_line_error(err, str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    ("spec", "name"),
    [("tanh", "tanh"), ("elu(0.5)", "elu(0.5)"), ({"preset": "elu", "alpha": 0.5}, "elu(0.5)"),
     ({"preset": "monomial", "degree": 3}, "monomial(3)"), ("hermite(2)", "hermite(2)"),
     ({"preset": "polynomial", "coefficients": [0, 1, 0.5]}, "polynomial(0,1,0.5)"),
     ({"preset": "tanh", "name": "T"}, "T")],
)  # fmt: skip
def test_any_preset_with_its_parameters(spec, name: str) -> None:
    # σ_w given: polynomials of degree > 1 have no stable EOC point (V'(q*) = (2p − 1)/p at χ = 1)
    config = validate(with_(activations=[spec], sigma_b=0.2, sigma_w=1.0))
    assert config.activation_objects()[0].name == name


def test_kernel_and_backends_validate() -> None:
    assert validate(with_(kernel="nngp")).kernel == "nngp"
    assert validate(with_(limit={"backend": "quadrature"})).limit.backend == "quadrature"
    with pytest.raises(ConfigError, match=r"^kernel:"):
        validate(with_(kernel="cntk"))


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [(with_(activations=["tanh"], sigma_b=0.2, limit={"backend": "closed_form"}), "limit.backend"),
     (with_(activations=["polynomial"]), "activations.0")],
)  # fmt: skip
def test_any_activation_mistakes_are_one_line_errors(raw: dict, prefix: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(raw)
    assert_one_line_error(err, prefix)


def test_renamed_presets_do_not_share_cells() -> None:
    from ntksim.studies.concentration import expand

    a = expand(validate(with_(activations=[{"preset": "tanh", "name": "mine"}], sigma_b=0.2)))
    b = expand(validate(with_(activations=[{"preset": "sin", "name": "mine"}], sigma_b=0.2)))
    assert a[0].cell_id != b[0].cell_id


def test_a_misspelt_key_is_named_not_the_key_it_should_have_been() -> None:
    with pytest.raises(ConfigError) as err:
        validate({"activation": ["relu"], "depths": [2], "widths": [8]})
    assert str(err.value).startswith("activation: unknown key (and 1 more problem)")


MINIMAL = {  # each study with the keys it needs and nothing else: every other key is a default
    "concentration": {"activations": ["relu"], "depths": [2], "widths": [8]},
    "depth": {"study": "depth", "activations": ["relu"]},
    "spectrum": {"study": "spectrum", "activations": ["relu"], "depths": [2], "kmax": 20, "dims": [3]},
    "positivity": {"study": "positivity", "activations": ["relu"]},
    "sample_paths": {"study": "sample_paths", "activations": ["relu"]},
    "training": {"study": "training", "activations": ["relu"]},
}


@pytest.mark.parametrize("study", sorted(MINIMAL))
def test_defaults_resolve_to_the_form_a_resumed_run_reads_back(study: str) -> None:
    """Issue 25, bug 1: `kernels` left out resolved to [ntk, nngp], its config.yaml read back to
    [nngp, ntk], and the second run into the same --out was refused as a changed config. A
    validated config is a fixed point of dump → validate, for minimal configs and every shipped one."""
    configs = [MINIMAL[study]] + [
        read_yaml(p)
        for p in sorted(CONFIGS.glob("*.yaml"))
        if read_yaml(p).get("study", "concentration") == study
    ]
    for raw in configs:
        first = validate(raw).model_dump(mode="json")
        assert validate(first).model_dump(mode="json") == first, raw


def test_a_number_yaml_reads_as_text_is_named_with_the_fix() -> None:
    """Issue 25, bug 6: `learning_rate: 1e-3` is a string to YAML 1.1; say so and how to write it."""
    import yaml

    raw = yaml.safe_load("activations: [relu]\ndepths: [2]\nwidths: [8]\nsigma_b: 1e-1\n")
    with pytest.raises(
        ConfigError, match=r"^sigma_b: '1e-1' was read as text, not a number .*write 1\.0e-1\)$"
    ):
        validate(raw)
