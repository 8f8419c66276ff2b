"""``python -m bench`` runs every benchmark module with its defaults; ``python -m bench NAME [ARGS...]`` runs
one with its own options (``python -m bench export --quick``).

Exits non-zero when any benchmark misses its target or fails.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def benchmark_names() -> list[str]:
    folder = Path(__file__).resolve().parent
    return sorted(info.name for info in pkgutil.iter_modules([str(folder)]) if not info.name.startswith("_"))


def run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"bench.{name}")
    print(f"== bench.{name} ==", flush=True)
    return module.main(argv)


def main(argv: list[str]) -> int:
    names = benchmark_names()
    if argv:
        if argv[0] not in names:
            print(
                f"usage: python -m bench [NAME [ARGS...]]; NAME is one of {', '.join(names)}", file=sys.stderr
            )
            return 2
        return run(argv[0], argv[1:])
    failed = [name for name in names if run(name, []) != 0]
    if failed:
        print(f"benchmarks that missed their targets or failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
