"""The modules' import graph (read with ast, nothing imported): no import circles in jmp_calc, training or
experiments; jmp_calc never imports training or lightning; the installed packages never import experiments (which
is not installed).

Every import counts, also the ones inside functions (a lazy import hides a circle, it does not remove it). An
edge goes from a module to the module it names (``from a.b import c``: to ``a.b.c`` when that is a module, else to
``a.b``); the implicit import of parent packages is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jmp_calc", "training", "experiments")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of ``modules`` (and external top-level names, prefixed ``ext:``) that ``name`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()

    def add(target: str):
        if target in modules:
            out.add(target)
        elif target.split(".")[0] not in PACKAGES:
            out.add("ext:" + target.split(".")[0])
        else:  # a name inside a module: the module that defines it
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target:
                out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for alias in node.names:
                add(f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in modules else mod)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_is_read():
    """The graph sees the edges it must see (a parser that found nothing would pass every other test)."""
    g = _graph()
    assert "jmp_calc.errors" in g["jmp_calc.validate"]
    assert "jmp_calc.graph.geometry" in g["jmp_calc.graph.neighbors"]
    assert "jmp_calc.graph.neighbors" in g["jmp_calc.validate"]  # a lazy import inside a function
    assert "ext:lightning" in g["training.module"]
    assert "training.base_model" in g["training.build"] and "training.base_model" in g["training.finetune"]
    assert "training.run" in g["training.pretrain"] and "training.run" in g["training.finetune"]  # one build path
    assert "experiments.mini_jmp.datagen.common" in g["experiments.mini_jmp.datagen.corpus_v2"]
    assert "training.data.qm9" in g["experiments.mini_jmp.driver"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, f"import circles: {[sorted(c) for c in cycles]}"


def test_jmp_calc_never_imports_training_or_lightning():
    bad = {name: sorted(t for t in deps if t.startswith("training") or t in
                        ("ext:lightning", "ext:pytorch_lightning", "ext:lightning_fabric"))
           for name, deps in _graph().items() if name.split(".")[0] == "jmp_calc"}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"jmp_calc modules importing the training stack: {bad}"


def test_installed_packages_never_import_experiments():
    bad = {name: sorted(t for t in deps if t.startswith("experiments"))
           for name, deps in _graph().items() if name.split(".")[0] in ("jmp_calc", "training")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"installed modules importing experiments/ (not installed): {bad}"
