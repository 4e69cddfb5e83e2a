"""No module of the toolkit imports another that imports it back, directly or through a
chain, counting imports inside functions (the lazy ones that hide a cycle from Python's
import system but still tie the two modules together). Read from the source with
``ast``: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("codeclm", "jpeglm", "avclm", "data_tools", "codeclm_apps", "bench")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, else its longest known prefix (an attribute
    of a module), else None (outside the toolkit)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The toolkit modules ``module`` imports anywhere in its file (``TYPE_CHECKING``
    blocks and ``__init__`` re-export hubs included)."""
    is_pkg = path.name == "__init__.py"
    here = module if is_pkg else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the toolkit modules it imports."""
    # a package's __init__ that only gathers its modules' names is a hub, not a layer: an
    # import of the package by one of its own modules does not count
    return {m: {t for t in _imports(m, p, modules)
                if not (modules[t].name == "__init__.py" and m.startswith(t + "."))}
            for m, p in modules.items()}


def test_the_toolkit_has_no_import_cycle():
    cycle = _cycle(_graph(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edges, cyclic", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a2"}, "a2": set(), "b": {"b"}}, True),
])
def test_the_cycle_finder_finds_cycles(edges, cyclic):
    assert (_cycle(edges) is not None) == cyclic


def test_lazy_imports_count(tmp_path):
    """An import inside a function is an edge like a top-level one."""
    modules = {"p": tmp_path / "p" / "__init__.py", "p.a": tmp_path / "p" / "a.py",
               "p.b": tmp_path / "p" / "b.py"}
    modules["p"].parent.mkdir()
    modules["p"].write_text("")
    modules["p.a"].write_text("from .b import f\n")
    modules["p.b"].write_text("def f():\n    from . import a\n    return a\n")
    graph = _graph(modules)
    assert graph == {"p": set(), "p.a": {"p.b"}, "p.b": {"p.a"}}
    assert _cycle(graph) is not None
