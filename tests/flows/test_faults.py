"""Each flow's waits ride out what a real tenant and database do to them, and leave no duplicate behind.

While a DAG waits (deferred) for its OpenText decision, the sandbox answers 429 with Retry-After, then 503,
then drops connections, then revokes every token, then restarts; the Prodigy database is locked when
the run exports the batch and again when it writes the decision back. Each run must end in success with
exactly one process, one audit entry per event, one release, one asset event and one hand-off, and the
Prodigy data untouched.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from prodigy_opentext.core.approvals import BATCH_APPROVAL_PROCESS, RELEASE_SIGNOFF_PROCESS
from prodigy_opentext.core.audit import AuditLog, verify_audit_log
from prodigy_opentext.core.batches import business_key
from tests.fixtures.airflow_db import task_states
from tests.fixtures.background import acting_in_background
from tests.fixtures.opentext_sandbox import OpenTextSandbox, poll_until
from tests.flows.support import RELEASE_MANAGER, SME, batch_version, historic, release_runs

LOCK_SECONDS = 6.0
"""How long the Prodigy database stays locked: well inside the hook's 30 s busy timeout."""
FAULTS = [
    {"status": 429, "retry_after": 1, "times": 2},
    {"status": 503, "times": 2},
    {"drop_connection": True, "times": 2},
]


@contextmanager
def prodigy_locked(database: Path, seconds: float = LOCK_SECONDS) -> Iterator[threading.Thread]:
    """An exclusive lock on Prodigy's SQLite file, held for ``seconds`` from a thread of its own."""
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            taken.set()
            time.sleep(seconds)
            connection.execute("COMMIT")
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(30), "could not lock the Prodigy database"
    try:
        yield holder
    finally:
        holder.join(seconds + 30)


def prodigy_rows(database: Path) -> tuple[int, int]:
    with sqlite3.connect(database) as connection:
        examples = connection.execute("SELECT COUNT(*) FROM example").fetchone()[0]
        links = connection.execute("SELECT COUNT(*) FROM link").fetchone()[0]
    return examples, links


def decide_through_faults(
    sandbox: OpenTextSandbox, key: str, outcome: str, user: str, database: Path
) -> None:
    """Once the process's task is open: every fault in turn while the wait polls, then the decision,
    given while the Prodigy database is locked so the write-back meets the lock."""
    (task,) = poll_until(lambda: sandbox.tasks(processInstanceBusinessKey=key), 180, 0.5, f"a task of {key}")
    sandbox.set_faults(FAULTS)
    poll_until(
        lambda: all(rule["applied"] >= rule["times"] for rule in sandbox._admin("GET", "/faults")["faults"]),
        60,
        0.5,
        "every injected fault to have been met by the waiting trigger",
    )
    sandbox.clear_faults()
    sandbox.revoke_tokens()
    time.sleep(2)  # the wait meets the revoked token and fetches a new one
    sandbox.restart()
    time.sleep(2)  # the wait meets the restart
    with prodigy_locked(database):
        sandbox.complete(task["id"], outcome, user, comment="Decided through faults")


@pytest.mark.slow
def test_both_waits_ride_out_opentext_faults_and_a_locked_prodigy_database(
    flows, annotated_dataset, mlops_endpoint, prodigy_home
) -> None:
    sandbox, dags, data = flows["sandbox"], flows["dags"], flows["data"]
    database = Path(prodigy_home) / "prodigy.db"
    dataset = annotated_dataset()
    version = batch_version(dataset)
    rows_before = prodigy_rows(database)
    audit = data / "audit" / "governance.jsonl"

    approval_key = business_key(BATCH_APPROVAL_PROCESS, dataset, version)
    faults = acting_in_background(
        lambda: decide_through_faults(sandbox, approval_key, "approved", SME, database), timeout=300
    )
    with prodigy_locked(database), faults:  # the run starts by exporting the batch: it meets the lock
        run = dags["annotation_batch_approval"].test(run_conf={"dataset": dataset})
    assert run.state == "success", task_states(run)
    assert len(historic(sandbox, BATCH_APPROVAL_PROCESS, approval_key)) == 1
    assert len(release_runs(dataset, version)) == 1

    signoff_key = business_key(RELEASE_SIGNOFF_PROCESS, dataset, version)
    faults = acting_in_background(
        lambda: decide_through_faults(sandbox, signoff_key, "approved", RELEASE_MANAGER, database),
        timeout=300,
    )
    with prodigy_locked(database), faults:
        release = dags["dataset_release"].test(run_conf={"dataset": dataset, "version": version})
    assert release.state == "success", task_states(release)
    assert len(historic(sandbox, RELEASE_SIGNOFF_PROCESS, signoff_key)) == 1

    assert prodigy_rows(database) == rows_before, "no example was added, lost or linked twice"
    assert [p.name for p in (data / "releases" / dataset).iterdir()] == [version]
    assert len(mlops_endpoint.received) == 1, "one hand-off"
    assert verify_audit_log(audit).valid
    actions = [entry["action"] for entry in AuditLog(audit).entries() if dataset in entry["subject"]]
    assert sorted(actions) == sorted(
        ["batch_approved", "release_written", "release_announced", "release_handed_off"]
    ), actions
