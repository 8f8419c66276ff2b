"""Hook for Prodigy's annotation database."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class ProdigyHook(BaseHook):
    """Read and write Prodigy datasets in the SQL database Prodigy itself uses.

    The connection's extra takes Prodigy's own ``prodigy.json`` settings
    (``{"db": "sqlite", "db_settings": {"sqlite": {"name": "prodigy.db", "path": "/data"}}}``) so a team can
    paste what it already has; for PostgreSQL and MySQL the host, login, password, schema (database name)
    and port fields work as well.
    """

    conn_name_attr = "prodigy_conn_id"
    default_conn_name = "prodigy_default"
    conn_type = "prodigy"
    hook_name = "Prodigy"

    def __init__(self, prodigy_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prodigy_conn_id = prodigy_conn_id


    def test_connection(self) -> tuple[bool, str]:
        raise NotImplementedError
