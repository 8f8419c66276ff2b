"""``core/`` stays plain Python: no module of it imports Airflow or the hooks, directly or through another.

Each module is imported in a fresh interpreter (nothing else loaded first), and what it pulled in is read
from ``sys.modules``, so an import hidden behind another module counts too.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import prodigy_opentext.core

CORE_MODULES = sorted(
    module.name for module in pkgutil.iter_modules(prodigy_opentext.core.__path__, "prodigy_opentext.core.")
)
FORBIDDEN = (
    "airflow",
    "prodigy_opentext.hooks",
    "prodigy_opentext.operators",
    "prodigy_opentext.sensors",
    "prodigy_opentext.triggers",
    "prodigy_opentext.flows",
    "requests",
    "aiohttp",
    "sqlalchemy",
)

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def test_core_has_modules() -> None:
    assert {"prodigy_opentext.core.approvals", "prodigy_opentext.core.records"} <= set(CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_a_core_module_imports_neither_airflow_nor_the_hooks(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    impure = sorted(name for name in loaded if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN))
    assert not impure, f"{module} imports {impure[:10]}"
