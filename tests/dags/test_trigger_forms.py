"""The trigger forms of batch approval and the release: what a person can submit, and what empty means.

Params are checked as Airflow checks a run's conf (the form sends an emptied text field as null); what the
empty values then do in a running stack is shown by ``tests/browser/test_airflow_ui.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
FORMS = ("annotation_batch_approval", "dataset_release")


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    return {dag_id: bag.dags[dag_id] for dag_id in FORMS}


def resolved(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """The params a run with ``conf`` gets, or ParamValidationError as the trigger form shows it."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


@pytest.mark.parametrize("dag_id", FORMS)
def test_every_field_has_a_title_and_says_what_it_takes(dags, dag_id):
    for name, param in dags[dag_id].params.items():
        assert param.schema.get("title"), f"{dag_id}.{name} has no title"
        assert len(param.description or "") > 20, f"{dag_id}.{name} has no description"


@pytest.mark.parametrize("dag_id", FORMS)
def test_no_field_defaults_to_a_demo_value(dags, dag_id):
    for name in ("dataset", "version"):
        param = dags[dag_id].params.get_param(name)
        assert not param.has_value or param.value is None, f"{dag_id}.{name} defaults to {param.value!r}"


@pytest.mark.parametrize("conf", [{}, {"dataset": None}, {"dataset": None, "version": None}])
def test_batch_approval_takes_an_empty_dataset(dags, conf):
    params = resolved(dags["annotation_batch_approval"], conf)
    assert params["dataset"] is None and params["version"] is None


@pytest.mark.parametrize("dataset", ["../releases/x", "/tmp/x", "two words", "a,b", ".hidden", ""])
@pytest.mark.parametrize("dag_id", FORMS)
def test_a_name_that_cannot_be_a_dataset_is_refused_naming_the_field(dags, dag_id, dataset):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=r"param dataset: .* does not match"):
        resolved(dags[dag_id], {"dataset": dataset})


@pytest.mark.parametrize("dag_id", FORMS)
def test_a_version_must_be_a_batch_version(dags, dag_id):
    from airflow.sdk.definitions.param import ParamValidationError

    assert resolved(dags[dag_id], {"dataset": "brands.v2", "version": "b42"})["version"] == "b42"
    with pytest.raises(ParamValidationError, match="param version: '42' does not match"):
        resolved(dags[dag_id], {"dataset": "brands.v2", "version": "42"})


def test_the_release_needs_a_dataset_but_no_version(dags):
    from airflow.sdk.definitions.param import ParamValidationError

    release = dags["dataset_release"]
    with pytest.raises(ParamValidationError, match="param dataset"):
        resolved(release, {})
    with pytest.raises(ParamValidationError, match="param dataset"):
        resolved(release, {"dataset": None})
    params = resolved(release, {"dataset": "brands"})
    assert (params["version"], params["max_ignore_rate"], params["min_examples_per_label"]) == (None, 0.2, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_ignore_rate", 1.5), ("max_ignore_rate", -0.1), ("min_examples_per_label", -1)],
)
def test_release_thresholds_outside_their_range_are_refused(dags, field, value):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"param {field}"):
        resolved(dags["dataset_release"], {"dataset": "brands", field: value})


def test_waiting_for_annotators_needs_a_dataset():
    from prodigy_opentext.failures import DatasetRefused
    from prodigy_opentext.flows.batch_approval import waits_for_annotators

    assert waits_for_annotators(None, 0, 0) is False
    assert waits_for_annotators("brands", 10, 0) is True
    with pytest.raises(DatasetRefused, match="give the dataset, or set both to 0"):
        waits_for_annotators(None, 10, 0)


def test_a_version_without_a_dataset_is_refused():
    from prodigy_opentext.failures import DatasetRefused
    from prodigy_opentext.flows.batch_approval import batch_to_work_on

    with pytest.raises(DatasetRefused, match="version 'b7' names a batch of one dataset"):
        batch_to_work_on(None, "b7")
