"""The shape of the source: small functions, and imports that never go round in a circle.

Read from the source with `ast` (nothing is imported), every import counts: at module level,
inside functions and under `TYPE_CHECKING`. A package here is a first-level subpackage of
`keel` (`keel.auth`, `keel.db` ...); a module directly in `keel` (`keel.settings`) stands for
itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 40


def modules(root: Path = SRC) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports (`from pkg import module` is the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # a submodule, or a name the module itself defines
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {found for target in targets if (found := _known(target, known)) not in (None, name)}


def _known(target: str, known: Mapping[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit(module: str) -> str:
    """`keel.auth.service` -> `keel.auth`; `keel.settings` -> itself."""
    return ".".join(module.split(".")[:2])


def module_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def package_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(unit(module), set()).update(
            unit(target) for target in targets if unit(target) != unit(module)
        )
    return packages


def test_no_import_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_graph(module_graph())) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"b.z"}, "b.z": {"a.x"}, "c": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "b.z"]]
    assert cycles(package_graph(graph)) == [["a.x", "a.y", "b.z"]]  # units of one-part names
    assert cycles({"keel.a.m": {"keel.b.n"}, "keel.b.n": {"keel.a.o"}}) == []
    assert cycles(package_graph({"keel.a.m": {"keel.b.n"}, "keel.b.n": {"keel.a.o"}})) == [
        ["keel.a", "keel.b"]
    ]


def functions(root: Path = SRC) -> Iterator[tuple[str, int]]:
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                yield where, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_40_lines() -> None:
    long = [
        f"{where} ({lines} lines)" for where, lines in functions() if lines > MAX_FUNCTION_LINES
    ]
    assert long == []


@pytest.mark.parametrize("body_lines", [39, 40])
def test_the_length_check_counts_from_def_to_the_last_line(tmp_path: Path, body_lines: int) -> None:
    (tmp_path / "m.py").write_text("def f():\n" + "    x = 1\n" * body_lines)
    ((_, lines),) = functions(tmp_path)
    assert lines == body_lines + 1


# feature: items
# The example domain's non-test source (schemas, repository, service, router) before the shared
# kit took over its machinery: 645 lines. The example is what users copy, so it stays small.
EXAMPLE_DOMAIN = ("items/schemas.py", "items/repository.py", "items/service.py", "api/v1/items.py")
EXAMPLE_LINES_BEFORE_THE_KIT = 645


def test_the_example_domain_stays_within_60_percent_of_its_size_before_the_kit() -> None:
    lines = sum(len((SRC / "keel" / name).read_text().splitlines()) for name in EXAMPLE_DOMAIN)
    assert lines <= 0.6 * EXAMPLE_LINES_BEFORE_THE_KIT, f"{lines} lines"


# end feature: items
