"""The house's layers: each package imports only the packages below it (docs/architecture.md).

The data walks one way — webhook → inbox → business state → rules → cases and KPIs → pages —
and so do the imports. A new upward import fails here, naming the file and the line.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# From the bottom up; a package may import itself and anything listed before it.
LAYERS = ["core", "opsview", "ingestion", "exceptions", "reporting", "integrations",
          "simulator", "config"]


def imports_of(path):
    """(line, imported package) for every absolute import of one of the layers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS:
                yield node.lineno, top


def upward_imports():
    found = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, imported in imports_of(path):
                if LAYERS.index(imported) > LAYERS.index(package):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return found


def test_no_package_imports_a_package_above_it():
    assert upward_imports() == []


def test_every_package_of_the_project_has_its_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(LAYERS)


def test_the_check_sees_an_upward_import(tmp_path):
    upward = tmp_path / "bad.py"
    upward.write_text("import datetime\nfrom reporting.kpis import wip\n")
    assert list(imports_of(upward)) == [(2, "reporting")]
