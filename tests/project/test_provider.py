"""The installed provider package is what Airflow discovers: connection types, hooks, UI fields."""

from __future__ import annotations

import importlib

import pytest

CONNECTION_TYPES = {
    "prodigy": "prodigy_opentext.hooks.prodigy.ProdigyHook",
    "opentext_workflow": "prodigy_opentext.hooks.opentext.OpenTextWorkflowHook",
    "mlflow": "prodigy_opentext.hooks.mlflow.MLflowTrackingHook",
}


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_provider_is_discovered_through_its_entry_point(providers_manager):
    assert "prodigy-opentext-provider" in providers_manager.providers


@pytest.mark.parametrize(("conn_type", "hook_class"), sorted(CONNECTION_TYPES.items()))
def test_connection_type_is_registered_with_its_hook(conn_type, hook_class):
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook_info = ProvidersManagerTaskRuntime().hooks[conn_type]  # what a task uses; imports the hook class
    assert hook_info is not None, f"{conn_type} hook failed to import"
    assert hook_info.hook_class_name == hook_class
    assert hook_info.package_name == "prodigy-opentext-provider"


@pytest.mark.parametrize(("conn_type", "hook_class"), sorted(CONNECTION_TYPES.items()))
def test_hook_declares_its_connection(conn_type, hook_class):
    module, name = hook_class.rsplit(".", 1)
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == conn_type
    assert hook.default_conn_name
    assert getattr(hook, "conn_name_attr", None)
    assert callable(hook.test_connection)


def test_ui_field_labels_are_declared_without_importing_hooks(providers_manager):
    behaviours = providers_manager.field_behaviours
    assert behaviours["opentext_workflow"]["relabeling"]["login"] == "Client ID"
    assert behaviours["prodigy"]["relabeling"]["schema"] == "Database"
    widgets = providers_manager.connection_form_widgets
    assert widgets["extra__opentext_workflow__tenant_id"].field["schema"]["title"] == "Tenant ID"
    assert widgets["extra__opentext_workflow__password"].is_sensitive


def test_every_module_the_provider_lists_imports():
    from prodigy_opentext import get_provider_info

    info = get_provider_info()
    modules = [
        m
        for kind in ("hooks", "operators", "sensors", "triggers")
        for e in info[kind]
        for m in e["python-modules"]
    ]
    assert len(modules) >= 8
    for module in modules:
        importlib.import_module(module)
