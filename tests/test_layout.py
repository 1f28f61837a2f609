"""The layout is the architecture: which package of tdkit imports which, read from the source.

``python tests/test_layout.py`` (or ``pytest -s tests/test_layout.py``) prints the package graph.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tdkit"
ROOT = "tdkit"  # the top-level modules: entry points (CLI, demo, self-check, the notebook's check)
FORBIDDEN_TOP_LEVEL = {"reference", "grader_tests"}
# What the sandboxed side may import: itself and what every stage shares.
UNTRUSTED_MAY_IMPORT = {"untrusted", "core"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The stage package of a dotted module name: its second part when that is a folder of tdkit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ROOT


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, at any depth (function bodies too), plus ``import_module("x")`` calls."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    current = module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = current.split(".")[
                    : len(current.split(".")) - node.level + (1 if is_package else 0)
                ]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # ``from tdkit.core import data`` imports the module tdkit.core.data
            found.update(
                f"{prefix}.{alias.name}"
                for alias in node.names
                if (PACKAGE.parent / Path(*f"{prefix}.{alias.name}".split(".")))
                .with_suffix(".py")
                .exists()
            )
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (all of them, tdkit's own and others)."""
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def package_graph(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(package, imported package) -> the module imports behind that edge, ``a -> b``."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, imports in graph.items():
        for target in sorted(imports):
            if target == "tdkit" or target.startswith("tdkit."):
                source_pkg, target_pkg = package_of(module), package_of(target)
                if source_pkg != target_pkg:
                    edges[(source_pkg, target_pkg)].append(f"{module} -> {target}")
    return dict(edges)


def describe(edges: dict[tuple[str, str], list[str]]) -> str:
    packages = sorted({ROOT} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()})
    lines = ["tdkit package graph (A -> B: a module of A imports a module of B):"]
    for package in packages:
        targets = sorted(target for source, target in edges if source == package)
        lines.append(f"  {package:<10} -> {', '.join(targets) or '(nothing of tdkit)'}")
    return "\n".join(lines)


def find_cycle(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    """One cycle of the package graph (its packages in order), or [] when there is none."""
    successors: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        successors[source].add(target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(successors[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(successors):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_stages_import_only_the_right_way() -> None:
    """Does the sandboxed package import only itself and core, nothing import the course's reference or
    hidden tests, and the package graph have no cycle?"""
    graph = import_graph()
    edges = package_graph(graph)
    picture = describe(edges)
    print(picture)
    wrong_way = [
        line
        for (source, target), lines in edges.items()
        if source == "untrusted" and target not in UNTRUSTED_MAY_IMPORT
        for line in lines
    ]
    assert not wrong_way, (
        f"the untrusted package imports outside itself and core: {wrong_way}\n{picture}"
    )
    oracle = [
        f"{module} -> {target}"
        for module, imports in graph.items()
        for target in imports
        if target.split(".")[0] in FORBIDDEN_TOP_LEVEL
    ]
    assert not oracle, f"src/tdkit imports the reference or the hidden tests: {oracle}\n{picture}"
    cycle = find_cycle(edges)
    assert not cycle, (
        f"import cycle between packages: {' -> '.join(cycle)}\n"
        + "\n".join(line for a, b in itertools.pairwise(cycle) for line in edges[(a, b)])
        + f"\n{picture}"
    )


if __name__ == "__main__":
    print(describe(package_graph(import_graph())))
    sys.exit(0)
