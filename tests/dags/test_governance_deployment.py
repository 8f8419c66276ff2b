"""The deployment settings the DAG files share: where data lives is read when a task runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"


def load_settings():
    spec = importlib.util.spec_from_file_location("governance_deployment", DAGS / "_governance_deployment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_lives_beside_the_dags_folder_unless_the_environment_says_otherwise(monkeypatch, tmp_path):
    settings = load_settings()
    monkeypatch.delenv("PROJECT_DATA_DIR", raising=False)
    assert settings.data_dir() == DAGS.parent / "data"
    monkeypatch.setenv("PROJECT_DATA_DIR", str(tmp_path))
    assert settings.data_dir() == tmp_path, "read when called, not when the DAG file was parsed"
    assert settings.audit_log() == tmp_path / "audit" / "governance.jsonl"


def test_every_task_has_the_owning_team_and_retries():
    settings = load_settings()
    assert settings.DEFAULT_ARGS["owner"] == settings.OWNER != "airflow"
    assert settings.DEFAULT_ARGS["retries"] >= 1
