"""Rendering of batch script and command templates.

As in jupyterhub/batchspawner 1.3, a template that contains ``{{`` or ``{%`` is
rendered with jinja2, anything else with :meth:`str.format`, so existing
configurations keep working unchanged.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import jinja2

_env = jinja2.Environment(
    autoescape=False,
    keep_trailing_newline=True,
    undefined=jinja2.ChainableUndefined,
)


def is_jinja(template: str) -> bool:
    return "{{" in template or "{%" in template


def format_template(template: str, **subvars) -> str:
    """Render ``template`` with ``subvars`` (jinja2 or str.format)."""
    if is_jinja(template):
        return _compiled(template).render(**subvars)
    return template.format(**subvars)


@lru_cache(maxsize=64)
def _compiled(template: str) -> jinja2.Template:
    """The compiled template (compiling costs milliseconds of the hub's event loop per spawn;
    a site has a handful of distinct scripts)."""
    return _env.from_string(template)


def load_template(name: str) -> str:
    """Text of a script template shipped in ``batchspawner/schedulers/templates``."""
    return resources.files("batchspawner.schedulers").joinpath("templates", name).read_text()


_SAFE_LINE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def has_control_chars(value: str) -> bool:
    """True when the value holds a newline or another control character.

    Such a value could add lines (``#SBATCH`` directives, commands) to a
    batch script, so it is never rendered.
    """
    return bool(_SAFE_LINE_VALUE.search(value))
