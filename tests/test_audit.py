"""The audit log's head anchored in an Airflow Variable, and ``python -m prodigy_opentext.audit verify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodigy_opentext.audit import AUDIT_HEAD_VARIABLE, VariableAnchor, main
from prodigy_opentext.core.audit import AuditLog


@pytest.fixture
def heads_variable(airflow_db: str) -> Iterator[None]:
    """The real metadata database, without the Variable before and after the test."""
    from airflow.models import Variable

    Variable.delete(AUDIT_HEAD_VARIABLE)
    yield
    Variable.delete(AUDIT_HEAD_VARIABLE)


@pytest.fixture
def recorded(tmp_path: Path, heads_variable: None, run_dag) -> Path:
    """A log of three entries recorded by a task the way the flows record them, its head anchored in the
    Variable (which the Task SDK sets from a task only)."""
    from airflow.sdk import DAG, task

    from prodigy_opentext.flows._shared import record_in_audit_log

    path = tmp_path / "audit" / "governance.jsonl"

    @task
    def record() -> None:
        for n in range(1, 4):
            record_in_audit_log(path, "release_written", f"brands@b{n}", {"n": n}, event_key=f"release:b{n}")

    with DAG(f"audit_{tmp_path.name[-24:]}", schedule=None) as dag:
        record()
    assert run_dag(dag).state == "success"
    return path


def verify(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify", *map(str, args)])
    return code, capsys.readouterr().out.strip()


def forge(path: Path, entries: int) -> None:
    """Replace the log with one of ``entries`` entries whose chain is recomputed, valid on its own."""
    forged = AuditLog(path.with_name("forged.jsonl"))
    for n in range(entries):
        forged.append("airflow", "release_written", f"brands@b{n}")
    forged.path.replace(path)


def test_the_flows_anchor_the_head_in_the_variable(recorded: Path, capsys) -> None:
    from airflow.models import Variable

    heads = Variable.get(AUDIT_HEAD_VARIABLE, deserialize_json=True)
    last = json.loads(recorded.read_text().splitlines()[-1])
    assert heads[str(recorded.resolve())]["seq"] == 3
    assert heads[str(recorded.resolve())]["hash"] == last["hash"]
    assert verify(recorded, capsys=capsys) == (0, "audit log intact: 3 entries, head anchored at seq 3")


@pytest.mark.parametrize("damage", ["cut short", "deleted", "rewritten"])
def test_a_damaged_log_fails_verify_and_is_not_appended_to(recorded: Path, damage: str, capsys) -> None:
    """Before: each of these passed the check, and the next entry was appended as if nothing happened."""
    from prodigy_opentext.failures import AuditLogTampered
    from prodigy_opentext.flows._shared import record_in_audit_log

    if damage == "cut short":
        recorded.write_text("".join(recorded.read_text().splitlines(keepends=True)[:1]))
    elif damage == "deleted":
        recorded.unlink()
    else:
        forge(recorded, 3)
    code, report = verify(recorded, capsys=capsys)
    assert code == 1
    assert "entry 3 (hash" in report and f"in Airflow Variable {AUDIT_HEAD_VARIABLE}" in report
    assert {
        "cut short": "the log ends at entry 1 but entry 3",
        "deleted": "the log does not exist but entry 3",
        "rewritten": "the log was rewritten",
    }[damage] in report
    with pytest.raises(AuditLogTampered, match="restore the log"):
        record_in_audit_log(recorded, "release_written", "brands@b4", {}, event_key="release:b4")
    assert VariableAnchor(recorded).anchored_head().seq == 3, "the anchor still names what was lost"


def test_an_anchor_file_is_checked_without_airflow(tmp_path: Path, capsys) -> None:
    path = tmp_path / "governance.jsonl"
    entry, _ = AuditLog(path).append("airflow", "release_written", "brands@b1")
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({str(path.resolve()): {"seq": 1, "hash": entry["hash"], "ts": "2026-12-02"}}))
    assert verify(path, "--no-airflow", "--anchor-file", heads, capsys=capsys) == (
        0,
        "audit log intact: 1 entries, head anchored at seq 1",
    )
    forge(path, 1)
    code, report = verify(path, "--no-airflow", "--anchor-file", heads, capsys=capsys)
    assert code == 1 and f"was anchored at 2026-12-02 in anchor file {heads}" in report


def test_a_log_without_an_anchored_head_is_not_called_intact(tmp_path: Path, capsys) -> None:
    path = tmp_path / "governance.jsonl"
    code, report = verify(path, "--no-airflow", capsys=capsys)
    assert code == 0 and report.endswith(
        "no anchored head found anywhere (--no-airflow and no --anchor-file): nothing recorded yet"
    )
    AuditLog(path).append("airflow", "release_written", "brands@b1")
    code, report = verify(path, "--no-airflow", capsys=capsys)
    assert code == 1 and "1 entries, but NOT anchored" in report


def test_a_broken_chain_names_its_first_bad_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "governance.jsonl"
    AuditLog(path).append("airflow", "release_written", "brands@b1")
    path.write_text(path.read_text().replace("brands@b1", "brands@b2"))
    code, report = verify(path, "--no-airflow", capsys=capsys)
    assert (code, report.split(":")[0]) == (1, "audit log broken at entry 1 (line 1)")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            "edited middle line",
            "at entry 3 (line 3): hash does not match the entry's content (the entry was edited)",
        ),
        ("deleted middle line", "at entry 3 (line 3): the line holds entry 4 where entry 3 belongs"),
        ("swapped lines", "at entry 3 (line 3): the line holds entry 4 where entry 3 belongs"),
    ],
)
def test_verify_names_the_first_bad_line_of_a_damaged_chain(
    tmp_path: Path, damage: str, named: str, capsys
) -> None:
    path = tmp_path / "governance.jsonl"
    log = AuditLog(path)
    for n in range(1, 6):
        log.append("airflow", "release_written", f"brands@b{n}", {"n": n})
    lines = path.read_text().splitlines(keepends=True)
    assert verify(path, "--no-airflow", capsys=capsys)[0] == 1, "intact but not anchored: exit 1 too"
    if damage == "edited middle line":
        lines[2] = lines[2].replace("brands@b3", "brands@b9")
    elif damage == "deleted middle line":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    path.write_text("".join(lines))
    code, report = verify(path, "--no-airflow", capsys=capsys)
    assert code == 1 and f"audit log broken {named}" in report


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for argv in ([], ["verify"], ["verify", "x.jsonl", "--anchor-file", str(tmp_path / "none.json")]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2


def test_the_command_reads_the_variable_outside_a_task(recorded: Path) -> None:
    """``python -m prodigy_opentext.audit`` as an operator runs it: the metadata database, no task, and
    none of the test process's own context."""
    command = [sys.executable, "-m", "prodigy_opentext.audit", "verify", str(recorded)]
    env = {k: v for k, v in os.environ.items() if k != "_AIRFLOW_PROCESS_CONTEXT"}
    intact = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert (intact.returncode, intact.stdout.strip()) == (
        0,
        "audit log intact: 3 entries, head anchored at seq 3",
    )
    recorded.unlink()
    gone = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert gone.returncode == 1 and "the log does not exist but entry 3" in gone.stdout
