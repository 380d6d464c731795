"""Declared dependencies against what the code imports.

Every third-party module that the library or the scripts import is a declared
runtime dependency, with a floor the installed version meets and a pin in
``requirements/constraints.txt``. Every runtime dependency is used: imported,
or named in :data:`INDIRECT` with the code that makes a library load it.
Tests, benchmarks and notebooks may also import the ``dev`` extra.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
#: Runtime dependencies loaded by another library, not imported by name: distribution ->
#: (a file of ours, a string in it that makes the library load the dependency).
INDIRECT = {
    "h5netcdf": ("mmme_neuro/containers.py", 'engine="h5netcdf"'),  # xarray's netCDF-4 engine
    "python-picard": ("mmme_neuro/preprocessing.py", '"picard"'),  # MNE's ICA method
}
#: Import names whose distribution metadata does not map them (none yet); import name -> distribution.
ALIASES: dict[str, str] = {}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(group: str | None) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_norm(r.name): r for r in map(Requirement, reqs)}


def _imports(*dirs: str) -> dict[str, set[str]]:
    """Top-level third-party modules imported under ``dirs``, each with the files importing it."""
    found: dict[str, set[str]] = {}
    local = {"mmme_neuro", "analyses", "benchmarks", "tests", "conftest"}
    for d in dirs:
        for f in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    top = n.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, set()).add(str(f.relative_to(ROOT)))
    return found


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distribution(module: str) -> str:
    if module in ALIASES:
        return _norm(ALIASES[module])
    dists = _module_distributions().get(module)
    assert dists, f"no installed distribution provides the imported module {module!r}"
    return _norm(dists[0])


def test_every_import_is_declared_and_every_dependency_used():
    runtime = _requirements(None)
    dev = _requirements("dev")
    used = _imports("mmme_neuro", "analyses")
    undeclared = {m: sorted(files)[:3] for m, files in used.items() if _distribution(m) not in runtime}
    assert not undeclared, f"imported by the library but not a runtime dependency: {undeclared}"
    imported = {_distribution(m) for m in used}
    for dist, (path, text) in INDIRECT.items():
        assert text in (ROOT / path).read_text(encoding="utf-8"), f"{dist}: {path} no longer says {text}"
    unused = sorted(set(runtime) - imported - set(INDIRECT))
    assert not unused, f"runtime dependencies nothing imports (move them to an extra or drop them): {unused}"
    extra = _imports("tests", "benchmarks", "notebooks")
    undeclared_dev = {m: sorted(f)[:3] for m, f in extra.items() if _distribution(m) not in runtime | dev}
    assert not undeclared_dev, f"imported by tests/benchmarks/notebooks but declared nowhere: {undeclared_dev}"


def test_floors_hold_and_every_dependency_is_pinned():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_norm(name.split("[")[0])] = version.strip()
    reqs = {**_requirements("dev"), **_requirements(None)}
    missing = sorted(set(reqs) - set(pins))
    assert not missing, f"not pinned in requirements/constraints.txt: {missing}"
    for name, req in reqs.items():
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}: the pin {pins[name]} is outside {req}"
        installed = metadata.version(req.name)
        assert installed == pins[name], f"{name}: installed {installed}, pinned {pins[name]} (make install)"
