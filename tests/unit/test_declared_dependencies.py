"""Every third-party module that components/ and pipelines/ import (at module level or inside a
function) belongs to a distribution pyproject.toml declares in [project].dependencies, and every
package-data pattern matches a file: an install from the wheel has what the code needs."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"components", "pipelines"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {_normalize(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in deps}


def imported_modules(files, root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports of third-party modules)."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(str(Path(path).relative_to(root)))
    return found


def undeclared(files, declared: set[str], root: Path = ROOT) -> list[str]:
    """One line per imported module that no declared distribution provides."""
    providers = packages_distributions()
    problems = []
    for module, where in sorted(imported_modules(files, root).items()):
        dists = {_normalize(d) for d in providers.get(module, [])}
        if not dists & declared:
            problems.append(f"{module} (imported by {', '.join(sorted(where))}; provided by "
                            f"{', '.join(sorted(dists)) or 'no installed distribution'})")
    return problems


def _sources():
    return sorted(p for d in FIRST_PARTY for p in (ROOT / d).rglob("*.py"))


def test_every_third_party_import_is_a_declared_dependency():
    files = _sources()
    assert len(files) > 50
    modules = imported_modules(files)
    assert {"torch", "transformers", "kfp", "matplotlib", "fsspec", "sklearn"} <= set(modules)
    assert undeclared(files, declared_distributions()) == []


def test_an_undeclared_import_is_reported(tmp_path):
    # scipy is installed (evidently and scikit-learn need it) but not a direct dependency.
    source = tmp_path / "pipelines" / "probe.py"
    source.parent.mkdir()
    source.write_text("def f():\n    import scipy.stats\n    from yaml import safe_load\n    from . import x\n")
    problems = undeclared([source], declared_distributions(), root=tmp_path)
    assert len(problems) == 1 and problems[0].startswith("scipy (imported by pipelines/probe.py; provided by scipy")


def test_declared_package_data_exists():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, patterns in setuptools.get("package-data", {}).items():
        for pattern in patterns:
            assert list((ROOT / package.replace(".", "/")).glob(pattern)), f"package-data {package}: {pattern}"
