"""The import structure the README's map describes: each unit imports only its own layer or lower ones,
and units of one layer never import each other in a circle.

Function-level imports count too: a deferred import is still a dependency."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "monitoring_lib"

# unit -> layer, as in the README's "How the code is laid out: monitoring_lib".
LAYERS: dict[str, int] = {
    "errors": 1, "migrations": 1, "db": 1, "config": 1, "schedule": 1, "sql_common": 1,
    "drift.registration": 1, "drift.registry": 1, "drift.metrics": 1,
    "drift": 2, "estimation": 2, "quality": 2, "applications": 2, "source": 2,
    "compute": 3, "reference.fit": 3,
    "results": 4,
    "compute.groups": 5, "reference": 5, "runner": 5, "performance": 5, "retraining": 5, "dynatrace": 5,
    "run_summary": 5, "operator_view": 5,
    "cli": 6, "config_check": 6, "status": 6, "demo": 6, "tasks": 6,
}


def unit_of(module: str) -> str | None:
    """`monitoring_lib.compute.groups.window` -> `compute.groups`; the package itself -> None."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    two = ".".join(parts[:2])
    return two if two in LAYERS else parts[0]


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (LIB / rel).with_suffix(".py").is_file() or (LIB / rel / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("monitoring_lib"):
            for alias in node.names:  # `from monitoring_lib.drift import metrics` imports a module
                name = f"{node.module}.{alias.name}"
                found.add(name if is_module(name) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("monitoring_lib."))
    return found


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in LIB.rglob("*.py"):
        module = ".".join(("monitoring_lib", *path.relative_to(LIB).with_suffix("").parts))
        source = unit_of(module.removesuffix(".__init__"))
        if source is None or module == "monitoring_lib.__init__":
            continue
        for target in map(unit_of, imports_of(path)):
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(".".join(("monitoring_lib", *p.relative_to(LIB).with_suffix("").parts)))
             for p in LIB.rglob("*.py") if p.name != "__init__.py" or p.parent != LIB}
    assert units - {None} <= set(LAYERS), f"add these to the README's map and LAYERS: {units - set(LAYERS)}"


def test_no_unit_imports_a_higher_layer() -> None:
    upward = sorted(f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]})"
                    for src, targets in unit_graph().items() for dst in targets if LAYERS[dst] > LAYERS[src])
    assert upward == []


def test_no_import_circle_between_units() -> None:
    graph = unit_graph()
    state: dict[str, int] = {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule is only worth something if a violation is caught: a config module importing results."""
    bad = tmp_path / "bad.py"
    bad.write_text("from monitoring_lib.results.window import write_window\nimport monitoring_lib.runner\n")
    targets = {unit_of(m) for m in imports_of(bad)}
    assert targets == {"results", "runner"}
    assert all(LAYERS[t] > LAYERS["config"] for t in targets)
