"""The single-user stack of a venv: the packages whose versions must match on both sides.

``python -m bench.stack --pins`` prints them as pip requirements (``name==version`` ...), for
bench/run.sh to install the same into the 1.3.0 venv; :func:`stack` is what run.py prints in
the table. Only the standard library, so any venv's python can run it from the checkout.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

# the server and the server extensions JupyterLab brings; stack() adds the distribution of every
# other server extension the venv enables (ours enables jupyter-server-proxy, for the apps)
STACK = (
    "jupyterhub",
    "jupyter_server",
    "jupyterlab",
    "jupyterlab_server",
    "jupyter_lsp",
    "jupyter_server_terminals",
    "notebook_shim",
    "tornado",
)


def enabled_extensions(prefix: str = sys.prefix) -> list[str]:
    """Server extensions this venv enables (``etc/jupyter/jupyter_server_config.d/*.json``)."""
    folder = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    names = set()
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, on in ((data.get("ServerApp") or {}).get("jpserver_extensions") or {}).items():
            if on:
                names.add(name)
    return sorted(names)


def extension_distributions(prefix: str = sys.prefix) -> list[str]:
    """The distributions that provide the enabled server extensions (jupyter-server-proxy...)."""
    dists = metadata.packages_distributions()
    out = set()
    for name in enabled_extensions(prefix):
        for dist in dists.get(name.split(".")[0], []):
            out.add(dist.lower().replace("-", "_"))
    return sorted(out)


def stack() -> dict[str, str]:
    out = {}
    for name in tuple(STACK) + tuple(d for d in extension_distributions() if d not in STACK):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    out["extensions"] = ",".join(enabled_extensions()) or "none"
    return out


if __name__ == "__main__":
    if "--pins" in sys.argv:
        print(" ".join(f"{k}=={v}" for k, v in stack().items() if v != "absent" and k != "extensions"))
    else:
        print(" ".join(f"{k} {v}" for k, v in stack().items()))
