"""Operators for Prodigy datasets: export a dataset to release files, load a task stream for annotation."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from prodigy_opentext.core.batches import Batch
from prodigy_opentext.core.export import JsonlSink, ParquetSink, partial_path
from prodigy_opentext.core.params import from_rendered
from prodigy_opentext.core.payloads import ExportManifest, LoadedTasks
from prodigy_opentext.core.records import dumps_compact, read_task_source
from prodigy_opentext.failures import RowsQuarantined
from prodigy_opentext.hooks.prodigy import ProdigyHook

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

OUTPUT_FORMATS = {"jsonl": JsonlSink, "parquet": ParquetSink}


class _ProdigyOperator(BaseOperator):
    """Holds the connection id and builds the hook only when the task runs."""

    def __init__(self, *, prodigy_conn_id: str = ProdigyHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prodigy_conn_id = prodigy_conn_id

    @cached_property
    def hook(self) -> ProdigyHook:
        return ProdigyHook(self.prodigy_conn_id)


def _write_atomically(path: Path, text: str) -> None:
    partial = partial_path(path)
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class ProdigyExportOperator(_ProdigyOperator):
    """Stream a Prodigy dataset to a JSONL or Parquet file, with a manifest JSON file next to it.

    Rows that are not valid JSON or lack Prodigy's required keys go to a quarantine JSONL file (named in the
    log and the manifest) instead of the output; the task fails with :class:`QuarantineLimitExceeded` when
    their share of the rows read is above ``max_quarantined_fraction``. Returns the manifest (counts by
    answer, label and annotator, sha256, example id range, quarantine) to XCom; the data stays in files.

    OpenLineage: the Prodigy dataset version read (``<dataset>@b<until_id>``, else up to the last example
    exported) → the data file (sha256, rows, bytes; columns for Parquet) and the quarantine file, if rows
    went there.

    :param dataset: the Prodigy dataset (templated).
    :param output_path: the data file to write (templated); its parent folders are created.
    :param output_format: ``jsonl`` (each row as Prodigy stored it) or ``parquet`` (filterable columns plus
        each task's JSON in ``content``).
    :param session: export only the answers of this session dataset, e.g. ``ner_news-alice`` (templated).
    :param answer: export only ``accept``, ``reject`` or ``ignore`` answers (templated).
    :param since_id: export only examples after this example id, e.g. the ``last_example_id`` of the previous
        export's manifest (templated).
    :param until_id: export only examples up to this example id, e.g. where a reviewed batch ends (templated).
    :param quarantine_path: where invalid rows go (templated); default ``<output_path>.quarantine.jsonl``.
    :param manifest_path: where the manifest goes (templated); default ``<output_path>.manifest.json``.
    :param max_quarantined_fraction: the share of rows read that may be quarantined before the task fails.
    :param progress_every: log progress every this many rows read.
    """

    template_fields: Sequence[str] = (
        "dataset",
        "output_path",
        "session",
        "answer",
        "since_id",
        "until_id",
        "quarantine_path",
        "manifest_path",
    )

    def __init__(
        self,
        *,
        dataset: str,
        output_path: str,
        output_format: str = "jsonl",
        session: str | None = None,
        answer: str | None = None,
        since_id: int | str | None = None,
        until_id: int | str | None = None,
        quarantine_path: str | None = None,
        manifest_path: str | None = None,
        max_quarantined_fraction: float = 0.0,
        progress_every: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        if not 0.0 <= max_quarantined_fraction <= 1.0:
            raise ValueError(f"max_quarantined_fraction must be within 0..1, not {max_quarantined_fraction}")
        self.dataset = dataset
        self.output_path = output_path
        self.output_format = output_format
        self.session = session
        self.answer = answer
        self.since_id = since_id
        self.until_id = until_id
        self.quarantine_path = quarantine_path
        self.manifest_path = manifest_path
        self.max_quarantined_fraction = max_quarantined_fraction
        self.progress_every = progress_every
        self._manifest: ExportManifest | None = None

    def execute(self, context: Context) -> ExportManifest:
        output = Path(self.output_path)
        manifest_path = Path(self.manifest_path or output.with_name(output.name + ".manifest.json"))
        self.log.info("Exporting Prodigy dataset %r to %s (%s)", self.dataset, output, self.output_format)
        manifest = self.hook.export(
            self.dataset,
            OUTPUT_FORMATS[self.output_format](output),
            quarantine_path=self.quarantine_path,
            session=self.session or None,
            answer=self.answer or None,
            since_id=from_rendered(self.since_id, int, name="since_id"),
            until_id=from_rendered(self.until_id, int, name="until_id"),
            on_progress=lambda read: self.log.info("Read %d rows of %r so far", read, self.dataset),
            progress_every=self.progress_every,
        )
        manifest["format"] = self.output_format
        manifest["manifest_path"] = str(manifest_path)
        self._manifest = manifest
        _write_atomically(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        self.log.info(
            "Exported %d rows of %r to %s (sha256 %s); by answer %s; manifest %s",
            manifest["rows"],
            self.dataset,
            manifest["path"],
            manifest["sha256"],
            manifest["by_answer"],
            manifest_path,
        )
        if manifest["quarantined"]:
            self.log.warning(
                "%d rows of %r failed validation and are in the quarantine file %s",
                manifest["quarantined"],
                self.dataset,
                manifest["quarantine_path"],
            )
        if manifest["read"] and manifest["quarantined"] / manifest["read"] > self.max_quarantined_fraction:
            raise RowsQuarantined(manifest, self.max_quarantined_fraction)
        return manifest

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Also asked when the task failed: after too many rows were quarantined, the files are named."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        from prodigy_opentext.lineage import export_lineage

        if self._manifest is None:
            return OperatorLineage()
        manifest = self._manifest
        last_id = manifest.get("filters", {}).get("until_id") or manifest["last_example_id"]
        version = Batch(self.dataset, last_id).version if last_id is not None else None
        return export_lineage(self.hook.target, self.dataset, version, manifest)


class ProdigyLoadTasksOperator(_ProdigyOperator):
    """Create a Prodigy dataset and the task stream Prodigy's server reads, from a JSONL or CSV source.

    The whole source is checked before anything is written; bad rows fail the task, each named by its line.
    Tasks get Prodigy's input and task hashes (kept when present) and the stream file keeps one task per task
    hash: a rerun, or a source that overlaps an earlier one, adds only new tasks. The dataset is created with
    ``dataset_meta`` (merged into the meta of an existing dataset). Returns counts and the stream path.

    :param source_path: JSONL (one task per line) or CSV (a ``text_column`` plus any columns, which become
        ``meta``) (templated).
    :param dataset: the Prodigy dataset the answers will go to (templated).
    :param stream_path: the JSONL task stream to write, e.g. what ``prodigy <recipe> <dataset> <source>``
        serves (templated).
    :param dataset_meta: meta stored with the dataset: instructions, labels, request id (templated).
    :param source_format: ``jsonl`` or ``csv``; default from the source file's suffix.
    :param text_column: the CSV column holding the text.
    """

    template_fields: Sequence[str] = ("source_path", "dataset", "stream_path", "dataset_meta")
    template_fields_renderers = {"dataset_meta": "json"}

    def __init__(
        self,
        *,
        source_path: str,
        dataset: str,
        stream_path: str,
        dataset_meta: dict[str, Any] | None = None,
        source_format: str | None = None,
        text_column: str = "text",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_path = source_path
        self.dataset = dataset
        self.stream_path = stream_path
        self.dataset_meta = dataset_meta
        self.source_format = source_format
        self.text_column = text_column

    def execute(self, context: Context) -> LoadedTasks:
        tasks = read_task_source(
            self.source_path, source_format=self.source_format, text_column=self.text_column
        )
        stream = Path(self.stream_path)
        existing = read_task_source(stream, source_format="jsonl") if stream.exists() else []
        by_task_hash = {task["_task_hash"]: task for task in existing}
        added = 0
        for task in tasks:
            if task["_task_hash"] not in by_task_hash:
                by_task_hash[task["_task_hash"]] = task
                added += 1
        if added or not stream.exists():
            stream.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(stream, "".join(dumps_compact(task) + "\n" for task in by_task_hash.values()))
        created = self.hook.add_dataset(self.dataset, self.dataset_meta or {})
        if not created and self.dataset_meta:
            self.hook.set_meta(self.dataset, self.dataset_meta)
        result = LoadedTasks(
            dataset=self.dataset,
            dataset_created=created,
            stream_path=str(stream),
            tasks=len(by_task_hash),
            added=added,
            duplicates=len(tasks) - added,
        )
        self.log.info(
            "Task stream %s for %r: %d tasks (%d new, %d already there)",
            stream,
            self.dataset,
            result["tasks"],
            added,
            result["duplicates"],
        )
        return result
