"""Point a project-local AIRFLOW_HOME at this repository.

Airflow writes a complete ``airflow.cfg`` (with generated secrets) the first time it runs; this script
then sets the few options the project depends on, in place, so every ``airflow`` command run with
``AIRFLOW_HOME=.airflow`` sees this repo's ``dags/`` and ``plugins/`` and no example DAGs, and writes
OpenLineage events into the data folder. Running it again changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SQLITE_CONNECT_ARGS = "prodigy_opentext.sqlite_metadata.CONNECT_ARGS"
SQLITE_ONLY_KEYS = ("sql_alchemy_connect_args", "sql_alchemy_connect_args_async")
"""``[database]`` options that hold only while the metadata database is SQLite (a lock wait)."""
LINEAGE_EVENTS = "openlineage-events.jsonl"
"""The file in the data folder that OpenLineage's file transport appends every event to."""


def default_data_dir() -> Path:
    """The data folder as ``dags/_governance_deployment.py`` finds it: ``PROJECT_DATA_DIR``, or ``data/``."""
    return Path(os.environ.get("PROJECT_DATA_DIR") or REPO / "data")


def lineage_transport(data_dir: Path) -> str:
    """OpenLineage's file transport (``[openlineage] transport``), one JSON event a line, appended: in the
    data folder itself, which every Airflow process of an installation can write."""
    return json.dumps({"type": "file", "log_file_path": str(data_dir / LINEAGE_EVENTS), "append": True})


def project_settings(home: Path, data_dir: Path) -> dict[tuple[str, str], str]:
    """The options the project sets; ``data_dir`` is where its files (and lineage events) go."""
    return {
        ("core", "dags_folder"): str(REPO / "dags"),
        ("core", "plugins_folder"): str(REPO / "plugins"),
        ("core", "load_examples"): "False",
        ("core", "executor"): "LocalExecutor",
        ("database", "sql_alchemy_conn"): f"sqlite:///{home / 'airflow.db'}",
        **{("database", key): SQLITE_CONNECT_ARGS for key in SQLITE_ONLY_KEYS},
        ("logging", "base_log_folder"): str(home / "logs"),
        ("dag_processor", "refresh_interval"): "30",
        # Waits on OpenText and Prodigy hold no worker slot: sensors defer to the triggerer by default.
        ("operators", "default_deferrable"): "True",
        # Jobs are named in OpenLineage as <namespace>/<dag>.<task>.
        ("openlineage", "namespace"): "prodigy-opentext",
        ("openlineage", "transport"): lineage_transport(data_dir),
    }


def apply_settings(text: str, settings: dict[tuple[str, str], str]) -> str:
    """Replace ``key = value`` lines inside their section; append what the file lacks."""
    pending = dict(settings)
    out: list[str] = []
    section = None
    for line in text.splitlines():
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            out.extend(_missing_in(section, pending))
            section = header.group(1)
        else:
            option = re.match(r"^([A-Za-z0-9_]+)\s*=", line)
            if option and (section, option.group(1)) in pending:
                key = option.group(1)
                line = f"{key} = {pending.pop((section, key))}"
        out.append(line)
    out.extend(_missing_in(section, pending))
    for (sect, key), value in pending.items():
        out += ["", f"[{sect}]", f"{key} = {value}"]
    return "\n".join(out) + "\n"


def _missing_in(section: str | None, pending: dict[tuple[str, str], str]) -> list[str]:
    keys = [key for (sect, key) in pending if sect == section]
    return [f"{key} = {pending.pop((section, key))}" for key in keys]


def main(home: str) -> None:
    home_path = Path(home).resolve()
    cfg = home_path / "airflow.cfg"
    if not cfg.exists():
        sys.exit(f"{cfg} does not exist yet: run any airflow command with AIRFLOW_HOME={home_path} first")
    text = cfg.read_text()
    data_dir = default_data_dir().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)  # the lineage file's folder: the transport creates no folder
    updated = apply_settings(text, project_settings(home_path, data_dir))
    if updated != text:
        cfg.write_text(updated)
        print(f"configured {cfg}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(REPO / ".airflow"))
