"""Publish a staged, validated and approved dataset version as an immutable release, with its lineage."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodigy_opentext.core.payloads import ApprovalRecord, PublishedRelease, StagedRelease
from prodigy_opentext.flows.release import publish_release
from prodigy_opentext.operators.prodigy import _ProdigyOperator

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class PublishReleaseOperator(_ProdigyOperator):
    """Write ``<release_root>/releases/<dataset>/<version>/`` and its audit entry
    (:func:`~prodigy_opentext.flows.release.publish_release`): an equal rerun is a no-op, other content for
    a version already released fails without retries. Returns the :class:`PublishedRelease` to XCom.

    OpenLineage: the Prodigy dataset version (``<dataset>@<version>``) and the staged files → every file of
    the release, its manifest included (sha256 as version, rows, bytes), with the run facets
    ``prodigyOpentextApprovals`` (who approved what, when, in which OpenText process),
    ``prodigyOpentextValidation`` and ``prodigyOpentextAgreement``, all read from the written manifest.

    :param staged: the staged version (``stage_release_data``'s result) (templated).
    :param validation: the validation summary of the staged data (templated).
    :param approvals: the approvals read back from OpenText (templated).
    :param release_root: the folder holding ``releases/`` (templated).
    :param audit_path: the audit log the release is recorded in (templated).
    :param prodigy_conn_id: the Prodigy connection the data came from: it names the lineage's input.
    """

    template_fields: Sequence[str] = ("staged", "validation", "approvals", "release_root", "audit_path")
    ui_color = "#c9e7c9"

    def __init__(
        self,
        *,
        staged: StagedRelease | Any,
        validation: dict[str, Any] | Any,
        approvals: list[ApprovalRecord] | Any,
        release_root: str | os.PathLike,
        audit_path: str | os.PathLike,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.validation = validation
        self.approvals = approvals
        self.release_root = release_root
        self.audit_path = audit_path
        self._published: PublishedRelease | None = None

    def execute(self, context: Context) -> PublishedRelease:
        self._published = publish_release(
            self.staged,
            self.validation,
            self.approvals,
            release_root=Path(self.release_root),
            audit_path=Path(self.audit_path),
            run_id=str(context["run_id"]),
        )
        return self._published

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Also asked when the task failed: then only the inputs are named."""
        from prodigy_opentext.lineage import release_lineage

        return release_lineage(self.hook.target, self.staged, self._published)
