"""DAG files stay cheap to parse: the scheduler re-imports them on every loop.

The time budget itself (< 200 ms above an empty DAG file) is measured by ``bench/parse.py``; this test
checks the causes of slow parsing: heavy libraries imported at module level, directly or through the
provider modules a DAG file imports.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ("pandas", "great_expectations", "numpy", "pyarrow", "requests", "sqlalchemy", "aiohttp", "peewee")

PROBE = """
import importlib.util, json, sys
import airflow.sdk  # what every DAG file pays anyway
sys.path.append(sys.argv[2])  # the DAGs folder, as the DAG processor puts it on sys.path
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported outside any function or class body."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_there_are_dag_files():
    assert DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_import_at_module_level(path):
    assert not module_level_imports(path) & set(HEAVY)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_importing_the_dag_file_loads_no_heavy_library(path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(path.parent)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"{path.name} loads {heavy[:10]} at parse time"
