"""The package's layers: imports point down (spec <- models/detection/data <- training/evaluation/
export <- report <- cli/reproduce) and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import ffcore

PACKAGE = Path(ffcore.__file__).parent
# layer of each top-level module or subpackage of ffcore
LAYERS: dict[str, int] = {
    **dict.fromkeys(("config", "schedule", "profiles", "paths", "thesis", "pipeline"), 0),
    **dict.fromkeys(("models", "detection", "data"), 1),
    **dict.fromkeys(("training", "evaluation", "export"), 2),
    "report": 3,
    **dict.fromkeys(("reproduce", "cli", "__main__", "__init__"), 4),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ffcore module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ffcore")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ffcore"):
            for alias in node.names:  # `from ffcore.models import reference` imports a module
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                found.add(sub if is_module else node.module)
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__init__"]


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops <= set(LAYERS), f"modules without a layer: {sorted(tops - set(LAYERS))}"


def test_imports_point_down() -> None:
    upward = [
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in _graph().items()
        for dep in deps
        if _layer(dep) > _layer(mod)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = _graph()

    def resolve(dep: str) -> str:  # `ffcore.models` is the package's __init__
        return dep if dep in graph else dep.rsplit(".", 1)[0]

    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(resolve(d) for d in graph.get(mod, ())):
            if dep == mod:
                continue
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, mod, dep]))
            if dep not in state:
                visit(dep, [*path, mod])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself works: the old models <-> pretrained pair is a cycle."""
    graph = {"a": {"b"}, "b": {"a"}}
    state: dict[str, int] = {}
    cycle = False

    def visit(mod: str) -> None:
        nonlocal cycle
        state[mod] = 1
        for dep in graph[mod]:
            if state.get(dep) == 1:
                cycle = True
            elif dep not in state:
                visit(dep)
        state[mod] = 2

    visit("a")
    assert cycle
