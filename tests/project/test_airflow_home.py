"""The Airflow settings the project applies to an installation (``scripts/configure_airflow_home.py``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from scripts.configure_airflow_home import SQLITE_ONLY_KEYS
from scripts.launchers import AirflowSite

LOCK_HELD_SECONDS = 7
"""Longer than the 5 s Python's SQLite driver waits for a lock by default."""


def _site(tmp_path: Path, conn: str) -> AirflowSite:
    return AirflowSite(tmp_path / "home", tmp_path / "data", 8080, conn)


def test_a_sqlite_metadata_database_waits_out_another_writer_instead_of_failing(tmp_path: Path) -> None:
    database = tmp_path / "airflow.db"
    env = _site(tmp_path, f"sqlite:///{database}").environment({"PATH": "/usr/bin:/bin"})
    sqlite3.connect(database).execute("CREATE TABLE t (x INTEGER)").connection.commit()

    writer = sqlite3.connect(database, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(LOCK_HELD_SECONDS, writer.commit)
    release.start()
    started = time.monotonic()
    try:
        # Airflow's own engine, configured as the project configures it, writes while the lock is held.
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from airflow import settings\n"
                "with settings.engine.begin() as c: c.exec_driver_sql('INSERT INTO t VALUES (1)')",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        release.join()
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started >= LOCK_HELD_SECONDS, "the write waited for the other writer"
    assert sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_the_lock_wait_is_not_given_to_a_postgres_metadata_database(tmp_path: Path) -> None:
    sqlite_env = _site(tmp_path, "sqlite:////tmp/airflow.db").environment({})
    postgres_env = _site(tmp_path, "postgresql://postgres@127.0.0.1/airflow").environment({})
    for key in SQLITE_ONLY_KEYS:
        variable = f"AIRFLOW__DATABASE__{key.upper()}"
        assert sqlite_env[variable] == "prodigy_opentext.sqlite_metadata.CONNECT_ARGS"
        assert variable not in postgres_env


def test_a_home_configured_for_sqlite_and_pointed_at_postgres_gets_no_sqlite_arguments(
    tmp_path: Path,
) -> None:
    env = _site(tmp_path, "sqlite:////tmp/airflow.db").environment({"PATH": "/usr/bin:/bin"})
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql://postgres@127.0.0.1/airflow"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "prodigy_opentext.sqlite_metadata.CONNECT_ARGS"
    code = "from airflow import settings; print(settings._get_connect_args('sync'))"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout.strip()) == (0, "{}"), result.stderr[-2000:]
