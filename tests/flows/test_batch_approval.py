"""Flow 1, batch approval, end to end: ``annotation_batch_approval`` by ``dag.test()`` against both sandboxes.

An approved batch, recorded and released, is the first half of ``tests/flows/test_release.py``; here a
rejection marks the batch for rework and nothing is ever released.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS
from prodigy_opentext.core.batches import business_key
from prodigy_opentext.flows._shared import NameRefused
from prodigy_opentext.flows.batch_approval import find_ready_batches
from prodigy_opentext.flows.release import resolve_release_target
from tests.fixtures.airflow_db import task_states
from tests.flows.support import SME, batch_version, release_runs, reviewer
from tests.hooks import prodigy_support
from tests.hooks.prodigy_support import sample_rows

prodigy_sqlite_conn = prodigy_support.prodigy_sqlite_conn


@pytest.mark.slow
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


@pytest.mark.parametrize("name", ["../releases/victim", "/tmp/outside"])
def test_a_name_that_cannot_be_a_folder_is_refused_before_anyone_is_asked(
    name, prodigy_sqlite_conn, tmp_path
):
    """Before: such a name passed approval and sign-off, then failed (retried) at publish, and wrote
    review packages outside the data folder on the way."""
    from prodigy_opentext.hooks.prodigy import ProdigyHook

    hook = ProdigyHook()
    rows = [dict(row, answer="accept") for row in sample_rows("textcat_docs_issues", 3)]
    for dataset in (name, "plain_batch"):
        hook.add_examples(dataset, rows)
        hook.set_meta(dataset, {"labels": ["DOCUMENTATION"], "review": {"status": "ready"}})

    found = find_ready_batches()
    assert [batch["dataset"] for batch in found] == ["plain_batch"], "the others still go on"
    review = hook.get_meta(name)["review"]
    assert review["status"] == "refused" and "cannot name a folder" in review["reason"]
    assert [batch["dataset"] for batch in find_ready_batches()] == ["plain_batch"], "not picked up again"

    with pytest.raises(NameRefused, match="cannot name a folder") as refused:
        find_ready_batches(only=name)
    assert isinstance(refused.value, AirflowFailException), "retrying cannot change a name"
    with pytest.raises(NameRefused):
        resolve_release_target(name, "b1")
    assert not any(tmp_path.rglob("answers.jsonl")) and not Path("/tmp/outside").exists()
