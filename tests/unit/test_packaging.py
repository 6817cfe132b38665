"""Every product package goes into the wheel; benchmarks and tests do not."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("graph", "nodes", "retrieval", "evals", "supportgraph")


def _installed() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return set(find_packages(where=str(ROOT), include=include))


def test_every_product_package_is_installed() -> None:
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".")
               for top in PRODUCT for p in (ROOT / top).rglob("__init__.py")}
    assert {"supportgraph.text", "supportgraph.app.cli", "graph.persistence"} <= on_disk
    assert on_disk <= _installed()


def test_benchmarks_and_tests_are_not_installed() -> None:
    assert not {p for p in _installed() if p.split(".")[0] in ("benchmarks", "tests")}
