"""What a real (non-editable) install ships: every Python package folder of the source tree.

pyproject.toml lists its packages by hand (the template folders are data-only); a package folder
missing from that list is absent from a site's install while an editable install hides it.
"""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("batchspawner", "wrapspawner", "authenticators")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert folders - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
