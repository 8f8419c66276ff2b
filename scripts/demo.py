"""``make demo``: the main job end to end on this machine, from annotators to a release MLOps consumes.

The story: annotators finish a Prodigy batch; Airflow asks business reviewers in OpenText to approve it
and waits (deferred) for their decision; a reviewer approves; the release flow validates the data,
asks for a release sign-off, checks both approvals in OpenText and writes an immutable release; the
MLOps consumer DAG verifies and loads it. Both outside systems are the local sandboxes. Each flow's part
is a story in ``scripts/stories/`` (one module per flow), played in order.

Everything it creates lives in the data folder, emptied at start. It prints each step with its link
and a closing summary (also ``summary.json`` there, and one ``DEMO_SUMMARY {json}`` line), then keeps
Airflow and the reviewer inbox running until Ctrl-C. Everything it started is stopped on exit.

Environment (defaults in brackets):
    DEMO_DATA_DIR              data folder [data/demo]
    AIRFLOW_HOME               Airflow's home: config and admin password [.airflow]
    DEMO_AIRFLOW_PORT          Airflow UI and REST API [8080]
    DEMO_OPENTEXT_PORT         OpenText Workflow Service sandbox and its inbox [8091]
    DEMO_PRODIGY_PORT          Prodigy sandbox [8092]
    DEMO_MLFLOW_PORT           MLflow tracking server and its UI [8093]
    DEMO_REVIEW_PAUSE_SECONDS  how long the approval waits for you to look before the reviewer acts [20]
    DEMO_ONCE=1                exit with the story's status instead of waiting for Ctrl-C
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import stories
from scripts.configure_airflow_home import REPO
from scripts.launchers import (
    DEMO_ANNOTATORS,
    DEMO_DATASET_META,
    DEMO_TASKS,
    REVIEWER_PASSWORD,
    AirflowSite,
    ProdigyProject,
    start_airflow_standalone,
    start_mlflow_server,
    start_opentext_sandbox,
)
from scripts.processes import Stack, StackError, require_free_ports, reset_directory, say, wait_for
from scripts.reviewer import Reviewer

DATASET = "demo_batch"
OPENTEXT_POLL_SECONDS = "3"


@dataclass(frozen=True)
class DemoSettings:
    data_dir: Path
    airflow_home: Path
    airflow_port: int
    opentext_port: int
    prodigy_port: int
    mlflow_port: int
    review_pause: float
    once: bool

    @classmethod
    def from_environment(cls) -> DemoSettings:
        env = os.environ
        return cls(
            data_dir=Path(env.get("DEMO_DATA_DIR") or REPO / "data" / "demo").resolve(),
            airflow_home=Path(env.get("AIRFLOW_HOME") or REPO / ".airflow").resolve(),
            airflow_port=int(env.get("DEMO_AIRFLOW_PORT", "8080")),
            opentext_port=int(env.get("DEMO_OPENTEXT_PORT", "8091")),
            prodigy_port=int(env.get("DEMO_PRODIGY_PORT", "8092")),
            mlflow_port=int(env.get("DEMO_MLFLOW_PORT", "8093")),
            review_pause=float(env.get("DEMO_REVIEW_PAUSE_SECONDS", "20")),
            once=env.get("DEMO_ONCE") == "1",
        )


@dataclass
class Narrator:
    """Numbers and times the steps as they are told, and keeps them for the summary."""

    started: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, title: str, link: str | None = None) -> None:
        elapsed = time.monotonic() - self.started
        self.steps.append({"step": title, "link": link, "seconds": round(elapsed, 1)})
        say(f"\n[{len(self.steps)}] {title}  (+{elapsed:.0f}s)" + (f"\n    {link}" if link else ""))


def main() -> int:
    settings = DemoSettings.from_environment()
    # The hooks this process uses (the reviewers', the Prodigy steps') log at INFO in the middle of the
    # story; the steps already say what happened, and a retry's warning still shows.
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task.hooks=WARNING")
    ports = {
        "Airflow": settings.airflow_port,
        "the OpenText sandbox": settings.opentext_port,
        "the Prodigy sandbox": settings.prodigy_port,
        "the MLflow tracking server": settings.mlflow_port,
    }
    try:
        require_free_ports(ports)
    except StackError as error:
        say(f"demo: {error}")
        return 2
    reset_directory(settings.data_dir)
    with Stack(settings.data_dir / "logs") as stack:
        say(f"Demo data in {settings.data_dir}; process logs in {stack.log_dir}")
        try:
            status = run_story(settings, stack)
            if not settings.once:
                wait_for_interrupt(stack)
        except KeyboardInterrupt:
            status = 130
        finally:
            say("Stopping everything the demo started ...")
    return status


def run_story(settings: DemoSettings, stack: Stack) -> int:
    """Tell the story; print and save its summary; 0 when every run succeeded."""
    demo = Demo(settings, stack)
    try:
        demo.tell()
        status = 0
    except (StackError, stories.FlowFailed) as error:
        say(f"\nThe demo stopped: {error}")
        status = 1
    summary = {
        "status": "success" if status == 0 else "failed",
        "data_dir": str(settings.data_dir),
        "stack_id": stack.id,
        "steps": demo.narrator.steps,
        **demo.journal.summary(),
    }
    (settings.data_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if status == 0:
        print_closing_summary(summary)
    say("DEMO_SUMMARY " + json.dumps(summary))
    return status


@dataclass
class Demo:
    settings: DemoSettings
    stack: Stack
    narrator: Narrator = field(default_factory=Narrator)
    journal: stories.Journal = field(default_factory=stories.new_journal)

    def tell(self) -> None:
        settings, stack, step = self.settings, self.stack, self.narrator
        data, env = settings.data_dir, dict(os.environ)

        step("Starting the OpenText Workflow Service sandbox and deploying the BPMN models")
        opentext = start_opentext_sandbox(stack, settings.opentext_port, data / "opentext.db", env)
        reviewer = Reviewer(opentext)
        models = reviewer.deploy_models()
        say(
            f"    deployed {', '.join(sorted(models))}\n    reviewer inbox: {opentext.inbox_url} (sign in as "
            f"sme.reviewer@example.com or release.manager@example.com, password {REVIEWER_PASSWORD})"
        )

        names = [name for team in DEMO_ANNOTATORS for name in team.names]
        step(
            f"Prodigy: dataset {DATASET} {json.dumps(DEMO_DATASET_META)} "
            f"served from {DEMO_TASKS.relative_to(REPO)}; "
            f"simulated annotators {', '.join(names)} answer every task (carol departs from the guidelines "
            "on about a third of them)"
        )
        prodigy = ProdigyProject.sqlite(data / "prodigy")
        batch = prodigy.annotated_batch(
            stack, DATASET, DEMO_DATASET_META, DEMO_TASKS, settings.prodigy_port, env, DEMO_ANNOTATORS
        )
        say(f"    Prodigy sandbox: {batch.url}\n    annotators: {batch.annotators_summary}")

        site = AirflowSite(
            home=settings.airflow_home,
            data_dir=data,
            api_port=settings.airflow_port,
            sql_alchemy_conn=f"sqlite:///{data / 'airflow.db'}",
        )
        callback_token = secrets.token_urlsafe(32)
        opentext.call_airflow_back(site.url, callback_token)
        connections = {
            "AIRFLOW_CONN_PRODIGY_DEFAULT": prodigy.connection(),
            "AIRFLOW_CONN_OPENTEXT_DEFAULT": opentext.connection(),
            "AIRFLOW_CONN_OPENTEXT_CALLBACK": json.dumps(
                {"conn_type": "generic", "password": callback_token}
            ),
            "OPENTEXT_POLL_SECONDS": OPENTEXT_POLL_SECONDS,
        }
        step("Starting the MLflow tracking server, where the MLOps consumer records its training runs")
        mlflow = start_mlflow_server(stack, settings.mlflow_port, data / "mlflow", env)
        connections.update(mlflow.airflow_settings())
        say(f"    MLflow UI: {mlflow.url}")
        step("Starting Airflow: airflow standalone (api-server, scheduler, dag-processor, triggerer)")
        api = start_airflow_standalone(stack, site, site.environment(env, connections))
        say(f"    Airflow UI: {api.url}  (user admin, password {api.password})")
        world = stories.World(
            api, reviewer, prodigy, DATASET, data, stack=stack, step=step, review_pause=settings.review_pause
        )
        stories.enable_dags(world)
        say(f"    unpaused {', '.join(stories.DAG_IDS)}")
        stories.play(world, self.journal)
        self.journal.results["callbacks"] = [
            {key: call.get(key) for key in ("activityId", "processInstanceId", "status", "error")}
            for call in opentext.http_calls()
        ]


def print_closing_summary(summary: dict[str, Any]) -> None:
    lines = ["", "The story, end to end:"]
    for dag_id, run in summary["runs"].items():
        lines.append(f"  {dag_id:27} {run['state']:8} {run['url']}")
    for approval in summary["approvals"]:
        lines.append(f"  {approval['reviewer']} approved '{approval['task']}': {approval['url']}")
    if request := summary.get("request"):
        lines.append(
            f"  request '{request['title']}': dataset {request['dataset']}, "
            f"{request['progress']['answers']} answers, review run {request['review_run']}"
        )
    if regulated := summary.get("regulated"):
        lines.append(
            f"  regulated case: dataset {regulated['dataset']} for {', '.join(regulated['sessions'])} only "
            f"({regulated['tasks_masked']} of {regulated['held_tasks']} texts masked), its approval waits: "
            f"{regulated['approval_task']}"
        )
    for qa in summary.get("qa_rounds") or []:
        rework = qa["rework"]
        done = f", {rework['tasks']} tasks reworked in {rework['dataset']}" if rework else ": passed"
        failed = f"{qa['failed']} of {qa['sampled']} sampled answers failed"
        lines.append(f"  QA round {qa['round']}: {failed}{done}")
    if callbacks := summary.get("callbacks"):
        answered = sorted({str(call["status"] or call["error"]) for call in callbacks})
        lines.append(
            f"  OpenText called Airflow back on {len(callbacks)} decisions (answered {', '.join(answered)}): "
            "each wait read its decision at once instead of at its next poll"
        )
    lines.append(f"  release: {summary['release']['path']}")
    if training := summary.get("training_run"):
        lines.append(f"  MLflow training run that used it: {training['run_url']}")
    if governance := summary.get("governance"):
        lines.append(f"  governance report: {governance['report']}")
        lines.append(f"  the same report live in Airflow (Governance): {governance['view']}")
    lines.append(f"  summary: {summary['data_dir']}/summary.json")
    say("\n".join(lines))


def wait_for_interrupt(stack: Stack) -> None:
    """Keep the stack up for a person to explore until Ctrl-C (or a process of it exits)."""
    say("\nAirflow and the reviewer inbox stay up: press Ctrl-C to stop.")
    try:
        wait_for(lambda: False, timeout=float("inf"), what="Ctrl-C", interval=2, stack=stack)
    except StackError as error:
        say(f"demo: {error}")


if __name__ == "__main__":
    sys.exit(main())
