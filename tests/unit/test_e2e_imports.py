"""Every test module collects in a venv without the browser stack (the JupyterHub 5 venv's fast tier
collects tests/e2e too, with ``-m "not e2e"``, and has no Playwright): Playwright is imported inside
the browser tests and helpers, never at a module's top level (test_dashboard_live did, and the
JupyterHub 5 stage of CI stopped at collection)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
BROWSER_ONLY = ("playwright",)


def _top_level_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:  # the module's own statements only, not inside functions
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_test_module_imports_playwright_at_its_top_level():
    found = [f"{path.relative_to(TESTS)}: {name}" for path in sorted(TESTS.rglob("*.py"))
             for name in _top_level_imports(path) if name.split(".")[0] in BROWSER_ONLY]
    assert not found, found
