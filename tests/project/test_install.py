"""The provider installs from ``pyproject.toml`` alone: into a fresh virtualenv, with the project's pinned
versions as constraints, every module of it imports and so does every third-party package it imports
anywhere (also inside functions, such as Great Expectations in the validation operator)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "prodigy_opentext"

pytestmark = pytest.mark.slow

PROBE = """
import importlib, importlib.metadata, json, pkgutil, sys
import prodigy_opentext
modules = [m.name for m in pkgutil.walk_packages(prodigy_opentext.__path__, "prodigy_opentext.")]
failed = {}
for name in ["prodigy_opentext", *modules, *sys.argv[1:]]:
    try:
        importlib.import_module(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"
distributions = importlib.metadata.packages_distributions()
print(json.dumps({"file": prodigy_opentext.__file__, "modules": modules, "failed": failed,
                  "distributions": {name: distributions.get(name.split(".")[0]) for name in sys.argv[1:]}}))
"""


def third_party_imports() -> set[str]:
    """Top-level names of everything the provider imports that is neither the stdlib nor itself."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return {
        name
        for name in names
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("prodigy_opentext")
    }


def declared_distributions() -> set[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"]}


def providing_distribution(module: str, distributions: list[str] | None) -> set[str]:
    """What must be declared for ``module``: its providers package for ``airflow.providers.*``, Airflow
    for the rest of ``airflow``, else the distribution that installed it."""
    if module.startswith("airflow.providers."):
        return {f"apache-airflow-providers-{module.split('.')[2]}"}
    if module.split(".")[0] == "airflow":
        return {"apache-airflow"}
    return {canonicalize_name(name) for name in distributions or ()}


def test_the_provider_installs_alone_and_imports_everything_it_uses(tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed: `make setup` installs it into .venv", pytrace=False)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "VIRTUAL_ENV": str(venv)}
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 900}

    created = subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], **run)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    source = tmp_path / "source"  # built from a copy: the build leaves nothing in the working tree
    shutil.copytree(PACKAGE, source / "plugins" / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    constraints = str(REPO / "requirements.txt")
    installed = subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-c", constraints, str(source)], **run
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    imports = sorted(third_party_imports())
    assert {"airflow.sdk", "great_expectations", "pandas", "pyarrow", "sqlalchemy", "msgspec"} <= set(imports)
    probe = subprocess.run([str(python), "-c", PROBE, *imports], **run)
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(venv), f"imported {result['file']}, not the installed package"
    assert {"prodigy_opentext.core.approvals", "prodigy_opentext.flows.release"} <= set(result["modules"])
    assert result["failed"] == {}, "\n".join(f"{name}: {why}" for name, why in result["failed"].items())
    declared = declared_distributions()
    undeclared = {
        module: sorted(needed)
        for module, providers in result["distributions"].items()
        if not (needed := providing_distribution(module, providers)) & declared
    }
    assert not undeclared, f"imported, but only installed through other packages: {undeclared}"
