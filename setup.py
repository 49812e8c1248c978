# All metadata lives in pyproject.toml; this file lets `python setup.py develop`
# and older tooling work.
from setuptools import setup

setup()
