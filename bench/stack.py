"""The single-user stack of a venv: the packages whose versions must match on both sides.

``python -m bench.stack --pins`` prints them as pip requirements (``name==version`` ...), for
bench/run.sh to install the same into the 1.3.0 venv; :func:`stack` is what run.py prints in
the table. Only the standard library, so any venv's python can run it from the checkout.
"""

from __future__ import annotations

import sys
from importlib import metadata

# the server and every server extension our venv's jupyterhub-singleuser loads
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


def stack() -> dict[str, str]:
    out = {}
    for name in STACK:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


if __name__ == "__main__":
    if "--pins" in sys.argv:
        print(" ".join(f"{k}=={v}" for k, v in stack().items() if v != "absent"))
    else:
        print(" ".join(f"{k} {v}" for k, v in stack().items()))
