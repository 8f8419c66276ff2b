"""Validate an annotation export with Great Expectations before it can be approved or released.

Great Expectations and pandas are imported only when the operator runs, so DAG files that use it parse fast.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator

from prodigy_opentext.core.params import from_rendered
from prodigy_opentext.core.validation import (
    DEFAULT_SUITE_DIR,
    SAMPLE_ROWS,
    AnnotationRules,
    checked_columns,
    flatten_export,
    load_suites,
    summarize_results,
)
from prodigy_opentext.failures import AnnotationValidationFailed

if TYPE_CHECKING:
    import pandas as pd
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

T = TypeVar("T", int, float)
DATA_SOURCE = "prodigy_annotations"
XCOM_KEY = "validation_summary"


def run_annotation_suites(
    frames: Mapping[str, pd.DataFrame],
    suites: Mapping[str, Mapping[str, Any]],
    rules: AnnotationRules,
) -> dict[str, Any]:
    """Run each table's suite in an ephemeral Great Expectations context; return the JSON summary.

    Great Expectations gets only the columns the suite checks, and results in ``SUMMARY`` format: counts
    and the positions of the first failing rows, which are then looked up in the whole table to name them
    by the suite's ``index_columns``. (Passing ``unexpected_index_column_names`` instead makes Great
    Expectations read every failing row's fields one at a time: seconds per rule that fails on many rows.)
    Its INFO logging, which describes its own internals (at import, per context), is raised to WARNING.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)  # set to INFO

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(DATA_SOURCE)
        .add_dataframe_asset("annotation_tables")
        .add_batch_definition_whole_dataframe("whole_table")
    )
    results = {}
    for frame, suite_definition in suites.items():
        index_columns = suite_definition["meta"]["index_columns"]
        missing = [column for column in index_columns if column not in frames[frame].columns]
        if missing:
            raise ValueError(f"suite for table {frame!r} names index columns the table lacks: {missing}")
        suite = context.suites.add(gx.ExpectationSuite(**copy.deepcopy(suite_definition)))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": frames[frame][checked_columns(suite_definition)]},
            expectation_parameters=rules.parameters(),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS},
        ).to_json_dict()
        for expectation_result in result["results"]:
            _name_sample_rows(expectation_result.get("result") or {}, frames[frame], index_columns)
        results[frame] = result
    return summarize_results(results, rules, {frame: len(frames[frame]) for frame in suites})


def _name_sample_rows(details: dict[str, Any], table: pd.DataFrame, index_columns: list[str]) -> None:
    """Replace the first failing rows' positions by their ``index_columns`` values."""
    positions = details.get("partial_unexpected_index_list")
    if positions:
        details["partial_unexpected_index_list"] = table.loc[positions, index_columns].to_dict("records")


class AnnotationValidationOperator(BaseOperator):
    """Check a Prodigy JSONL export (and its open disputes) against the annotation suites.

    Pushes the JSON summary to XCom (key ``validation_summary``, and as the return value when it passes):
    per rule its success, observed value, unexpected count and a few sample rows. Raises
    :class:`~prodigy_opentext.exceptions.AnnotationValidationError` naming every broken rule with sample
    rows when the dataset fails (as :class:`AnnotationValidationFailed`, which is not retried).

    OpenLineage (passed or failed): the files checked, each with the standard ``dataQualityAssertions`` of
    its rules, and the ``prodigyOpentextValidation`` run facet (success, figures, per rule its outcome).

    :param export_path: JSONL file of examples (merged: one per item), e.g. consensus output.
    :param label_scheme: the approved labels; any other label fails the dataset.
    :param disputes_path: JSONL file of disputes still open (consensus output); any one fails the dataset.
    :param min_examples_per_label: each label of the scheme needs this many (accepted or rejected) examples.
    :param max_ignore_rate: the largest share of ``ignore`` answers accepted.
    :param suite_dir: directory of suite files (default: the project's ``include/gx/annotation_dataset``).
    """

    template_fields: Sequence[str] = (
        "export_path",
        "disputes_path",
        "label_scheme",
        "min_examples_per_label",
        "max_ignore_rate",
        "suite_dir",
    )
    ui_color = "#ffdcb0"

    def __init__(
        self,
        *,
        export_path: str | os.PathLike,
        label_scheme: Sequence[str],
        disputes_path: str | os.PathLike | None = None,
        min_examples_per_label: int | str = 1,
        max_ignore_rate: float | str = 0.1,
        suite_dir: str | os.PathLike = DEFAULT_SUITE_DIR,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_path = export_path
        self.label_scheme = label_scheme
        self.disputes_path = disputes_path
        self.min_examples_per_label = min_examples_per_label
        self.max_ignore_rate = max_ignore_rate
        self.suite_dir = suite_dir
        self._summary: dict[str, Any] | None = None

    def rules(self) -> AnnotationRules:
        """The rendered parameters as rules (strings, without native rendering, are parsed); a threshold
        that renders to nothing is an error, never a silent default."""
        scheme = from_rendered(self.label_scheme, list, name=f"{self.task_id}: label_scheme")
        return AnnotationRules(
            tuple(scheme or ()),
            self._threshold("min_examples_per_label", int),
            self._threshold("max_ignore_rate", float),
        )

    def _threshold(self, name: str, kind: type[T]) -> T:
        rendered = getattr(self, name)
        value = from_rendered(rendered, kind, name=f"{self.task_id}: {name}")
        if value is None:
            raise ValueError(f"{self.task_id}: {name} rendered to nothing ({rendered!r}): give it a number")
        return value

    def execute(self, context: Context) -> dict[str, Any]:
        rules = self.rules()
        suites = load_suites(self.suite_dir)
        flattened = flatten_export(self.export_path, rules, self.disputes_path)
        summary = run_annotation_suites(flattened.frames(), suites, rules)
        self._summary = summary
        context["ti"].xcom_push(key=XCOM_KEY, value=summary)
        stats = summary["statistics"]
        self.log.info(
            "%s: %d of %d rules passed (%s)",
            self.export_path,
            stats["successful"],
            stats["evaluated"],
            ", ".join(f"{frame} {rows} rows" for frame, rows in summary["rows"].items()),
        )
        if not summary["success"]:
            raise AnnotationValidationFailed(summary)
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Also asked when the task failed: a failed validation is reported with its outcome."""
        from prodigy_opentext.lineage import validation_lineage

        return validation_lineage(self.export_path, self.disputes_path, self._summary)
