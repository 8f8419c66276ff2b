"""OpenText connection settings: URLs, secrets kept out of reprs, bad fields named."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from prodigy_opentext._opentext.settings import OpenTextSettings, normalise_root_url


def connection(**extra: object) -> Connection:
    return Connection(
        conn_id="ot",
        conn_type="opentext_workflow",
        host="https://na-1-dev.api.opentext.com/",
        login="client",
        password="secret",
        extra=json.dumps({"tenant_id": "t1", **extra}),
    )


def test_settings_build_urls_and_hide_secrets() -> None:
    settings = OpenTextSettings.from_connection(connection(timeout=5, retry_budget=7))
    assert settings.token_url == "https://na-1-dev.api.opentext.com/tenants/t1/oauth2/token"
    assert settings.api_url("/tasks") == "https://na-1-dev.api.opentext.com/workflow/v1/tasks"
    assert (settings.timeout, settings.retry.budget) == (5.0, 7.0)
    assert "secret" not in repr(settings)
    assert settings.token_form()["client_secret"] == "secret"


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"grant_type": "implicit"}, "grant_type"),
        ({"grant_type": "password"}, "username"),
    ],
)
def test_settings_name_the_bad_field(extra: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        OpenTextSettings.from_connection(connection(**extra))
    assert "'ot'" in str(raised.value)


def test_root_url_accepts_bare_hosts_and_api_base() -> None:
    assert normalise_root_url("eu.api.opentext.com") == "https://eu.api.opentext.com"
    assert normalise_root_url("http://127.0.0.1:8080/workflow/v1/") == "http://127.0.0.1:8080"
