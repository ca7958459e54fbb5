"""The layers, as the layout shows them: labspec (the labs' declarations) imports no torch and nothing
above it; reports/ reads results with labspec's help and never imports training code."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported(package: str) -> dict[str, set[str]]:
    """Each module of `package` (a folder of ROOT) and the top-level names of what it imports."""
    names: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tops = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        names[str(path.relative_to(ROOT))] = tops
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("labspec", {"torch", "ray", "trainables", "reports", "tune_lab"}),
    ("reports", {"torch", "ray", "trainables", "tune_lab"}),
])
def test_a_layer_imports_nothing_above_it(package, forbidden):
    modules = imported(package)
    assert modules, f"{package}/ has no module"
    crossing = {module: sorted(tops & forbidden) for module, tops in modules.items() if tops & forbidden}
    assert not crossing, f"{package}/ imports what lies above it: {crossing}"
