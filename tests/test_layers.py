"""The package's layers: imports point down (spec <- models/detection/data <- training/evaluation/
export <- chain <- study <- report <- cli/reproduce), never sideways between the parts of one layer
(training does not import evaluation, models not data, ...), and no module imports itself back
through others."""

from __future__ import annotations

import ast
from pathlib import Path

import ffcore

PACKAGE = Path(ffcore.__file__).parent
# layer of each top-level module or subpackage of ffcore
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        (
            "config",
            "schedule",
            "profiles",
            "paths",
            "thesis",
            "pipeline",
            "fingerprint",
            "cpu_kernels",
            "atomic",
        ),
        0,
    ),
    **dict.fromkeys(("models", "detection", "data"), 1),
    **dict.fromkeys(("training", "evaluation", "export"), 2),
    "chain": 3,
    "study": 4,
    "report": 5,
    **dict.fromkeys(("reproduce", "cli", "__main__", "__init__"), 6),
}
# the layers whose parts are independent of each other (the spec modules build on each other)
SIDEWAYS_FORBIDDEN: tuple[int, ...] = (1, 2)


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


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    return LAYERS[_top(module)]


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


def sideways(graph: dict[str, set[str]]) -> list[str]:
    """Imports between different parts of one layer where its parts must stay independent."""
    return [
        f"{mod} imports {dep} (both layer {_layer(mod)})"
        for mod, deps in graph.items()
        for dep in deps
        if _layer(mod) in SIDEWAYS_FORBIDDEN
        and _layer(dep) == _layer(mod)
        and _top(dep) != _top(mod)
    ]


def test_no_sideways_imports() -> None:
    found = sideways(_graph())
    assert not found, "\n".join(found)


def test_the_sideways_check_finds_one() -> None:
    """The same check on the real graph plus a training -> evaluation and a detection -> models
    edge finds both, and nothing else."""
    graph = _graph()
    graph["ffcore.training.engine"] = graph["ffcore.training.engine"] | {
        "ffcore.evaluation.inference"
    }
    graph["ffcore.detection.priors"] = graph["ffcore.detection.priors"] | {"ffcore.models.backbone"}
    found = sideways(graph)
    assert len(found) == 2
    assert any("ffcore.training.engine imports ffcore.evaluation.inference" in f for f in found)
    assert any("ffcore.detection.priors imports ffcore.models.backbone" in f for f in found)


def test_the_trainer_is_the_engine_alone() -> None:
    """``ffcore.training`` reaches neither the evaluation nor the chain above it."""
    graph = _graph()
    for top in [m for m in graph if m.startswith("ffcore.training")]:
        above = sorted(
            m for m in reachable(graph, top) if m.startswith(("ffcore.evaluation", "ffcore.chain"))
        )
        assert not above, f"{top} imports {above}"
    assert any(m.startswith("ffcore.evaluation") for m in reachable(graph, "ffcore.chain.phases"))


def _resolve(graph: dict[str, set[str]], dep: str) -> str:
    """``ffcore.models`` (a package) is its ``__init__``; ``ffcore.x.name`` a name in ``ffcore.x``."""
    return dep if dep in graph else dep.rsplit(".", 1)[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import cycle of ``graph`` (module -> imported modules) as a path, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(mod: str, path: list[str]) -> list[str] | None:
        state[mod] = 1
        for dep in sorted(_resolve(graph, d) for d in graph.get(mod, ())):
            if dep == mod:
                continue
            if state.get(dep) == 1:
                return [*path, mod, dep]
            if dep not in state and (found := visit(dep, [*path, mod])):
                return found
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (found := visit(mod, [])):
            return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            dep = _resolve(graph, dep)
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    """The same function on the real graph plus one back edge (models -> study) finds it."""
    graph = _graph()
    graph["ffcore.models.heads"] = graph["ffcore.models.heads"] | {"ffcore.study"}
    cycle = find_cycle(graph)
    assert cycle is not None and "ffcore.study" in cycle and "ffcore.models.heads" in cycle


def test_evaluation_and_export_never_import_the_trainer() -> None:
    graph = _graph()
    for top in [m for m in graph if m.startswith(("ffcore.evaluation", "ffcore.export"))]:
        trainer = sorted(m for m in reachable(graph, top) if m.startswith("ffcore.training"))
        assert not trainer, f"{top} imports {trainer}"
    # the check sees what it is meant to: the study does reach the trainer
    assert any(m.startswith("ffcore.training") for m in reachable(graph, "ffcore.study"))
