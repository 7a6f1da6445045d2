"""The package's architecture holds: layers import only lower layers, nothing imports in a cycle,
no study imports another, and the top level holds only the CLI (every import counts, also the
lazy ones inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ntksim"
# lower number = lower layer; a module may import its own layer and those below
LAYERS = {"activations": 0, "data": 0, "nets": 1, "kernels": 2, "analysis": 3, "engine": 4, "studies": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports() -> dict[str, set[str]]:
    """module → the ntksim modules it imports (a name imported from a package counts as its
    submodule when there is one)."""
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ntksim"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in targets]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ntksim")]
            else:
                continue
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name and target != "ntksim":
                    edges[name].add(target)
    return edges


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_layer_imports_a_higher_one() -> None:
    upward = [
        (m, t)
        for m, targets in _imports().items()
        for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)  # type: ignore[operator]
    ]
    assert not upward


def test_no_import_cycles() -> None:
    edges = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_no_study_imports_another() -> None:
    def study(module: str) -> str | None:
        parts = module.split(".")
        is_study = len(parts) > 2 and parts[1] == "studies" and not parts[2].startswith("_")
        return parts[2] if is_study else None

    crossing = [
        (m, t)
        for m, targets in _imports().items()
        for t in targets
        if study(m) and study(t) and study(m) != study(t)
    ]
    assert not crossing


def test_no_study_package_has_a_submodule_named_like_a_study_function() -> None:
    """`from ntksim.studies.x.figures import …` inside x's own `figures()` rebinds x.figures to
    the submodule: a later `x.figures(...)` then calls a module."""
    from ntksim.engine.study import Study

    for package in (PACKAGE / "studies").iterdir():
        if (package / "__init__.py").is_file():
            clashes = {p.stem for p in package.glob("*.py")} & set(Study._fields)
            assert not clashes, (package.name, clashes)


def test_the_top_level_holds_only_the_cli() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        LAYERS
    )


def test_the_layout_check_sees_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    """The check can fail: a kernels module that imports the engine is caught."""
    import shutil

    copy = tmp_path / "ntksim"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    bad = copy / "kernels" / "limits.py"
    bad.write_text(bad.read_text() + "\n\ndef _late():\n    from ntksim.engine.run import Run  # noqa\n")
    import sys

    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    upward = [(m, t) for m, ts in _imports().items() for t in ts if (_layer(t) or 0) > (_layer(m) or 99)]
    assert upward == [("ntksim.kernels.limits", "ntksim.engine.run")]
