"""The package's layout and import graph, read from the source (issue 23): no cycle, every module
in its place, the core below the hub and the 1.3 layer, the job's code on the standard library
only, no module over 600 lines (docs/architecture.md draws the same graph).

Every import counts, also one inside a function: a lazy import hides a cycle, it does not
remove it. The graph is computed from the files, so a new module is checked without being listed.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("batchspawner", "wrapspawner", "authenticators")

# the only modules allowed to import batchspawner.compat: the 1.3 names' module path, the package's
# lazy name table (and its table of moved paths), and the two scheduler modules whose 1.3 classes
# had UserEnvMixin
COMPAT_USERS = {"batchspawner", "batchspawner.batchspawner", "batchspawner.schedulers.slurm", "batchspawner.schedulers.condor"}
# batchspawner/ itself holds only the public names, 1.3's module path and the composition point
TOP_MODULES = {"batchspawner", "batchspawner.batchspawner", "batchspawner.spawner"}
SUBPACKAGES = {"core", "commands", "polling", "schedulers", "compat", "hub", "usage", "job"}
MAX_LINES = 600


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


def _in(name, package):
    return name == package or name.startswith(package + ".")


def test_the_core_never_imports_the_13_layer():
    graph = import_graph()
    importers = {name for name, targets in graph.items() if any(_in(t, "batchspawner.compat") for t in targets)}
    importers -= {n for n in importers if _in(n, "batchspawner.compat")}
    assert importers - COMPAT_USERS == set()


def test_the_core_stays_below_the_hub_the_usage_log_and_the_schedulers():
    """core/ is the flow and its state: it never reaches up to the pages, the usage log, a scheduler,
    the composition point or the 1.3 layer (those hook in: hub/cards.py holds the hooks it calls)."""
    graph = import_graph()
    above = ("batchspawner.hub", "batchspawner.usage", "batchspawner.schedulers", "batchspawner.compat")
    reaching = {
        name: sorted(t for t in targets if any(_in(t, a) for a in above) or t == "batchspawner.spawner")
        for name, targets in graph.items() if _in(name, "batchspawner.core") or _in(name, "batchspawner.commands")
    }
    assert {n: found for n, found in reaching.items() if found} == {}
    assert graph["batchspawner.core.start"], "the reader found no imports in core/start.py"


def test_only_the_composition_point_pulls_in_the_hub():
    """hub/ (pages, port API, cards) and usage/ are put in by batchspawner/spawner.py alone."""
    graph = import_graph()
    for package, allowed in (("batchspawner.hub", {"batchspawner.spawner"}), ("batchspawner.usage", set())):
        importers = {n for n, targets in graph.items() if any(_in(t, package) for t in targets)}
        outside = {n for n in importers if not _in(n, package) and not _in(n, "batchspawner.hub")}
        assert outside - allowed == set(), package


def test_the_jobs_code_needs_only_the_standard_library():
    """job/ runs inside every batch job, on the node's own Python: at import, the standard library
    only (Jupyter and tornado are imported where the server extension runs), and nothing of the
    hub side of this package."""
    import sys

    graph = import_graph()
    for name, path in modules().items():
        if not _in(name, "batchspawner.job"):
            continue
        assert {t for t in graph[name] if not _in(t, "batchspawner.job")} == set(), name
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert all(r in sys.stdlib_module_names or r in ("__future__", "batchspawner") for r in roots), (name, roots)


def test_every_module_has_its_place_and_none_is_over_600_lines():
    mods = modules()
    top = {n for n in mods if n.startswith("batchspawner") and n.count(".") <= 1
           and not any(n == f"batchspawner.{p}" for p in SUBPACKAGES)}
    assert top == TOP_MODULES
    long = {name: n for name, path in mods.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_wrapper_names_no_scheduler():
    """wrapspawner proxies any spawner: no module of it imports a scheduler's module (a profile's
    class says what it supports, e.g. ``cluster_facts``)."""
    from batchspawner import schedulers

    scheduler_modules = {value.split(":")[0] for value in schedulers.registered().values()}
    assert "batchspawner.schedulers.slurm" in scheduler_modules
    graph = import_graph()
    reaching = {name: sorted(graph[name] & scheduler_modules) for name in graph if name.startswith("wrapspawner")}
    assert {name: found for name, found in reaching.items() if found} == {}


def test_the_desktop_app_runs_as_a_file_on_the_nodes_python():
    """``apps vnc`` (the desktop's X server and session) is run by the node's own Python as one
    file (tests/e2e/test_desktop_cotenant.py does exactly that): nothing of this package at
    module level, only inside the jupyter-server-proxy entry points."""
    path = modules()["batchspawner.job.apps"]
    top = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level]
    assert [n for n in names if n.split(".")[0] == "batchspawner"] == []
