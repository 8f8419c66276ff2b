"""Hook for OpenText Workflow Service (OpenText's Flowable-based BPMN engine)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class OpenTextWorkflowHook(BaseHook):
    """Talk to OpenText Workflow Service's REST API with an OAuth2 client-credentials token.

    Connection fields: host = root URL (``https://na-1-dev.api.opentext.com``), login/password = client id and
    secret; extra: ``tenant_id``, ``grant_type``, optional ``username``/``password``, ``timeout``, ``verify``.
    """

    conn_name_attr = "opentext_conn_id"
    default_conn_name = "opentext_default"
    conn_type = "opentext_workflow"
    hook_name = "OpenText Workflow Service"

    def __init__(self, opentext_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opentext_conn_id = opentext_conn_id


    def test_connection(self) -> tuple[bool, str]:
        raise NotImplementedError
