"""The package's import graph, read from the source (issue 23): no cycle, and the core never
imports the batchspawner 1.3 layer (batchspawner/compat.py sits on top of it).

Every import counts, also one inside a function: a lazy import hides a cycle, it does not
remove it. The graph is computed from the files, so a new module is checked without being listed.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("batchspawner", "wrapspawner", "authenticators")

# the only modules allowed to import batchspawner.compat: the 1.3 names' module path, the package's
# lazy name table, and the two scheduler modules whose 1.3 classes had UserEnvMixin
COMPAT_USERS = {"batchspawner", "batchspawner.batchspawner", "batchspawner.schedulers.slurm", "batchspawner.schedulers.condor"}


def modules():
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def import_graph():
    mods = modules()
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
                subs = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in mods]
                names = subs if len(subs) == len(node.names) else subs + [target]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            # a module's own parent packages are imported before it anyway: not an edge
            ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
            graph[name] |= {n for n in names if n in mods and n != name and n not in ancestors}
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "batchspawner.spawner" in graph and graph["batchspawner.spawner"], "the reader found no imports"
    assert cycles(graph) == []


def test_the_core_never_imports_the_13_layer():
    graph = import_graph()
    importers = {name for name, targets in graph.items() if "batchspawner.compat" in targets}
    assert importers - COMPAT_USERS == set()


def test_the_wrapper_names_no_scheduler():
    """wrapspawner proxies any spawner: no module of it imports a scheduler's module (a profile's
    class says what it supports, e.g. ``cluster_facts``)."""
    from batchspawner import schedulers

    scheduler_modules = {value.split(":")[0] for value in schedulers.registered().values()}
    assert "batchspawner.schedulers.slurm" in scheduler_modules
    graph = import_graph()
    reaching = {name: sorted(graph[name] & scheduler_modules) for name in graph if name.startswith("wrapspawner")}
    assert {name: found for name, found in reaching.items() if found} == {}
