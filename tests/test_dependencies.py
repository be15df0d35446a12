"""Every package the suite imports is declared, and museval is pinned."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ablation", "lightning_modules", "datamodules")


def _declared() -> dict[str, str]:
    """Normalised distribution name -> its requirement line, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    name = re.compile(r"^[A-Za-z0-9_.-]+")
    return {name.match(line)[0].lower().replace("_", "-"): line for line in lines}


def _imported_modules() -> set[str]:
    """Top-level names of every import in the suite's packages (nested imports too)."""
    names = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(PACKAGES) - set(sys.stdlib_module_names) - {"__future__"}


def test_every_imported_package_is_declared():
    declared = _declared()
    distributions = packages_distributions()
    missing = []
    for module in sorted(_imported_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & set(declared):
            missing.append(f"{module} (from {sorted(names)})")
    assert not missing, f"imported but not in pyproject.toml: {missing}"


def test_museval_is_pinned():
    # Its last release is from 2023: the regression reference in ../shared/data is
    # museval's figures, so an unnoticed new release must not change them.
    assert re.fullmatch(r"museval==[\d.]+", _declared()["museval"].replace(" ", ""))
