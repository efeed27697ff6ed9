"""The tree reads in data-flow order: no import cycle between talkingface's top-level parts.

Every `talkingface.*` import counts, at any depth (function-level and TYPE_CHECKING ones too),
reduced to its top-level part: `talkingface.api.routes.jobs` is `api`, `talkingface.cli` is `cli`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO_ROOT / "src" / "talkingface"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, package: str) -> Iterator[str]:
    """Absolute names of every module `path` (in `package`) imports, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _package_of(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "talkingface" and len(parts) > 1 else None


def _part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        source = _part(_module_name(path))
        if source is None:
            continue
        targets = {_part(name) for name in _imported(path, _package_of(path))} - {None, source}
        graph.setdefault(source, set()).update(t for t in targets if t is not None)
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycle_between_top_level_modules_and_packages() -> None:
    graph = _part_graph()
    assert "vocabulary" in graph and "api" in graph  # the walk found the tree
    cycles = [cycle for part in sorted(graph) if (cycle := _cycle_through(graph, part))]
    assert cycles == []


def test_the_vocabulary_is_a_leaf() -> None:
    assert _part_graph()["vocabulary"] == set()


def test_benches_never_import_tests() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in (REPO_ROOT / "bench").rglob("*.py")
        for name in _imported(path, "bench")
        if name == "tests" or name.startswith("tests.")
    ]
    assert offenders == []
