"""The governance story (flow 7): the report a release's asset event runs, and where people read it.

``governance_report`` runs daily and on every ``annotation_releases`` event. Played last, this story waits
for the run the latest release's event started (the improvement's, once the main batch's), checks it
succeeded, and names the report it wrote and the Airflow UI's Governance view, which shows the same report
live. Journal result: ``governance`` (the run, the report's files, the audit chain's verdict, the view).
"""

from __future__ import annotations

from typing import ClassVar

from scripts.airflow_api import after
from scripts.stories._story import Journal, World, finish
from scripts.stories.release import RELEASE_DAG

REPORT_DAG = "governance_report"
VIEW_ROUTE = "plugin/governance"
"""Where the UI shows the Governance view (its navigation entry's ``url_route``)."""


class GovernanceStory:
    dag_ids: ClassVar[tuple[str, ...]] = (REPORT_DAG,)
    results: ClassVar[tuple[str, ...]] = ("governance",)

    def play(self, world: World, journal: Journal) -> None:
        api = world.api
        latest = api.runs(RELEASE_DAG, state=["success"])[-1]
        run = api.wait_for_new_run(
            REPORT_DAG,
            lambda r: r["run_type"] == "asset_triggered" and after(r["run_after"], latest["start_date"]),
            world.timeout,
            world.stack,
        )
        world.step(
            f"The release of {latest['conf']['dataset']} started governance_report run {run['dag_run_id']}",
            world.run_url(run),
        )
        finish(world, run, journal)
        written = api.xcom(REPORT_DAG, run["dag_run_id"], "write_report")
        view = f"{api.url}/{VIEW_ROUTE}"
        journal.results["governance"] = {
            "run_id": run["dag_run_id"],
            "report": written["html"],
            "report_json": written["json"],
            "chain": written["chain_summary"],
            "releases": written["releases"],
            "problems": written["problems"],
            "view": view,
        }
        world.step(
            f"Governance report of {written['releases']} releases written; audit log: "
            f"{written['chain_summary']}",
            written["html"],
        )
        world.step("The Airflow UI's Governance view (navigation bar) shows it live", view)
