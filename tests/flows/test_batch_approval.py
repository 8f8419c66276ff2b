"""Flow 1, batch approval, end to end: ``annotation_batch_approval`` by ``dag.test()`` against both sandboxes.

An approved batch, recorded and released, is the first half of ``tests/flows/test_release.py``; here a
rejection marks the batch for rework and nothing is ever released.
"""

from __future__ import annotations

import pytest

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS
from prodigy_opentext.core.batches import business_key
from tests.fixtures.airflow_db import task_states
from tests.flows.support import SME, batch_version, release_runs, reviewer

pytestmark = pytest.mark.slow


def test_rejected_batch_is_marked_for_rework_and_never_released(flows, annotated_dataset):
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    dataset = annotated_dataset()
    version = batch_version(dataset)
    approval_key = business_key(BATCH_APPROVAL_PROCESS, dataset, version)

    with reviewer(sandbox, approval_key, "rejected", SME, "Relabel the sneaker brands"):
        run = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert run.state == "success", task_states(run)
    assert task_states(run)["start_release"] == "skipped"
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    review = ProdigyHook().get_meta(dataset)["review"]
    assert review["status"] == "rework"
    assert review["rework"]["comments"] == ["Relabel the sneaker brands"]
    assert release_runs(dataset, version) == []

    claimed = dags["dataset_release"].test(
        run_conf={"dataset": dataset, "version": version, "approved": True}
    )
    assert claimed.state == "failed"
    assert task_states(claimed)["check_batch_approval"] == "failed"
    assert not (data / "releases" / dataset).exists()
