"""Immutable, versioned dataset releases: ``<root>/releases/<dataset>/<version>/``.

A release holds its data files, a ``manifest.json`` (SHA-256 and size per file, example counts, label
distribution, agreement figures, validation summary, approvals, source dataset and sessions, regulated flag,
licence, run id, creation time) and its dataset card, whose sha256 the manifest records. It is
staged in a temporary directory beside its final place and published by one ``rename``, so readers see
either no release or a whole one. A version is written once: writing it again with the same content is a
no-op that returns the existing manifest (``already_released``); with different content it raises
:class:`ReleaseConflict` naming what differs. The run id and creation time are not content, so a rerun of
the same release matches. :func:`verify_release` re-checks every checksum before anything consumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prodigy_opentext.core.export import CHUNK, file_digest
from prodigy_opentext.core.paths import PLAIN_NAME, plain_name
from prodigy_opentext.core.records import RecordSummary, refuse_non_standard_json, scan_record
from prodigy_opentext.exceptions import ReleaseConflict, ReleaseCorrupt, ReleaseError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "prodigy-opentext-release/1"
# Recorded with a release but not part of its content: a rerun that differs only here is the same release
# (its approvals are the ones recorded when it was written, even if a comment was added in OpenText since).
RUN_FIELDS = ("run_id", "created", "approvals")


@dataclass
class ReleaseResult:
    path: Path
    manifest: dict[str, Any]
    already_released: bool


def release_path(root: str | os.PathLike, dataset: str, version: str) -> Path:
    """Where a release lives; dataset and version must be plain names (no separators, no leading dot)."""
    return Path(root) / "releases" / plain_name(dataset, "dataset") / plain_name(version, "version")


def _data_digest(path: Path, name: str, summary: RecordSummary) -> dict[str, Any]:
    """Checksum a JSONL data file and count its examples; a bad row (not a Prodigy example, or not standard
    JSON: NaN, Infinity) raises naming file and line. Rows are checked as the export checks them
    (:func:`~prodigy_opentext.core.records.scan_record`), without decoding their tokens."""
    digest = hashlib.sha256()
    size = rows = 0
    with open(path, "rb") as source:
        for line_no, line in enumerate(source, start=1):
            digest.update(line)
            size += len(line)
            if line.strip():
                row = f"{name}:{line_no}"
                if b"NaN" in line or b"Infinity" in line:  # cheap test first: almost no line has either
                    refuse_non_standard_json(line, row=row)
                summary.add_scanned(scan_record(line, row=row))
                rows += 1
    return {"sha256": digest.hexdigest(), "bytes": size, "rows": rows}


def _named(files: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike]) -> dict[str, Path]:
    named = (
        {name: Path(path) for name, path in files.items()}
        if isinstance(files, Mapping)
        else {Path(path).name: Path(path) for path in files}
    )
    for name, path in named.items():
        if name == MANIFEST_NAME or not PLAIN_NAME.match(name):
            raise ReleaseError(f"file name {name!r} cannot be used in a release")
        if not path.is_file():
            raise ReleaseError(f"release file {name!r}: {path} is not a file")
    return named


def content_differences(existing: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests, ignoring what a run records (:data:`RUN_FIELDS`)."""
    differences = []
    old_files, new_files = existing.get("files", {}), new.get("files", {})
    for name in sorted(old_files.keys() | new_files.keys()):
        if name not in new_files:
            differences.append(f"file {name!r} only in the existing release")
        elif name not in old_files:
            differences.append(f"file {name!r} not in the existing release")
        elif old_files[name] != new_files[name]:
            fields = sorted(
                k
                for k in old_files[name].keys() | new_files[name].keys()
                if old_files[name].get(k) != new_files[name].get(k)
            )
            differences.append(f"file {name!r}: {', '.join(fields)} differ")
    for key in sorted((existing.keys() | new.keys()) - {"files", *RUN_FIELDS}):
        if existing.get(key) != new.get(key):
            differences.append(f"field {key!r} differs")
    return differences


def _existing_or_conflict(
    target: Path, manifest: dict[str, Any], dataset: str, version: str
) -> ReleaseResult:
    existing = json.loads((target / MANIFEST_NAME).read_text())
    differences = content_differences(existing, manifest)
    if differences:
        raise ReleaseConflict(dataset, version, differences)
    return ReleaseResult(path=target, manifest=existing, already_released=True)


def write_release(
    root: str | os.PathLike,
    dataset: str,
    version: str,
    data_files: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike],
    *,
    attachments: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike] = (),
    validation: Mapping[str, Any] | None = None,
    approvals: Iterable[Mapping[str, Any]] = (),
    adjudications: Iterable[Mapping[str, Any]] = (),
    reworked: Iterable[Mapping[str, Any]] = (),
    source_dataset: str | None = None,
    sessions: Iterable[str] = (),
    agreement: Mapping[str, Any] | None = None,
    regulated: bool = False,
    licence: str | None = None,
    dataset_card: tuple[str, Callable[[Mapping[str, Any]], str]] | None = None,
    run_id: str | None = None,
    move: bool = False,
) -> ReleaseResult:
    """Write release ``dataset``/``version`` under ``root`` (or find the equal one already there).

    ``data_files`` are JSONL Prodigy examples (checked, counted and checksummed); ``attachments`` any other
    files (checksummed only). Both are named by their file name, or by the keys of a mapping.
    ``adjudications`` are the reviewers' decisions the examples hold, ``reworked`` the answers QA sent back
    and their annotators redid, both listed in the manifest. ``dataset_card`` is ``(file name, render)``:
    the card rendered from the manifest's content (not its run id or time, so an equal rerun renders an
    equal card), written beside it and recorded in it with its sha256. ``move`` moves the files in instead
    of copying (only once the release is known to be new).
    """
    target = release_path(root, dataset, version)
    data, extra = _named(data_files), _named(attachments)
    clash = data.keys() & extra.keys()
    if clash:
        raise ReleaseError(f"files named twice: {', '.join(sorted(clash))}")
    summary = RecordSummary()
    files = {name: {**_data_digest(path, name, summary), "kind": "data"} for name, path in data.items()}
    files.update(
        {name: {**file_digest(path)._asdict(), "kind": "attachment"} for name, path in extra.items()}
    )
    counts = summary.as_dict()
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "version": version,
        "source": {"dataset": source_dataset, "sessions": sorted(set(sessions))},
        "files": dict(sorted(files.items())),
        "counts": {
            "examples": counts["total"],
            "by_answer": counts["by_answer"],
            "by_annotator": counts["by_annotator"],
        },
        "label_distribution": counts["by_label"],
        "agreement": agreement,
        "regulated": regulated,
        "licence": licence,
        "validation": validation,
        "approvals": list(approvals),
        "adjudications": list(adjudications),
        "reworked": list(reworked),
        "run_id": run_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest = json.loads(json.dumps(manifest))
    card: bytes | None = None
    if dataset_card is not None:
        card_name, render = dataset_card
        if card_name in files or not PLAIN_NAME.match(card_name):
            raise ReleaseError(f"dataset card name {card_name!r} cannot be used in this release")
        card = render({k: v for k, v in manifest.items() if k not in ("run_id", "created")}).encode()
        card_sha256 = hashlib.sha256(card).hexdigest()
        manifest["files"][card_name] = {"sha256": card_sha256, "bytes": len(card), "kind": "card"}
        manifest["files"] = dict(sorted(manifest["files"].items()))
        manifest["dataset_card"] = {"file": card_name, "sha256": card_sha256}
    if target.exists():
        return _existing_or_conflict(target, manifest, dataset, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = {**data, **extra}
    stage = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
    try:
        for name, path in sources.items():
            if _transfer(path, stage / name, move=move) != files[name]["sha256"]:
                raise ReleaseError(f"release file {name!r}: {path} changed while the release was written")
            os.chmod(stage / name, 0o444)
        if card is not None:
            (stage / manifest["dataset_card"]["file"]).write_bytes(card)
            os.chmod(stage / manifest["dataset_card"]["file"], 0o444)
        with open(stage / MANIFEST_NAME, "w") as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.rename(stage, target)
        except OSError:
            if not (target / MANIFEST_NAME).exists():
                raise
            return _existing_or_conflict(target, manifest, dataset, version)
        return ReleaseResult(path=target, manifest=manifest, already_released=False)
    finally:
        if move and stage.exists():
            _move_back(stage, sources)
        shutil.rmtree(stage, ignore_errors=True)


def _move_back(stage: Path, sources: Mapping[str, Path]) -> None:
    """An unpublished stage gives moved files back to where they came from."""
    for name, path in sources.items():
        if (stage / name).exists():
            os.chmod(stage / name, 0o644)
            shutil.move(stage / name, path)


def _transfer(source: Path, destination: Path, *, move: bool) -> str:
    """Copy or move a file into the stage; return the SHA-256 of what arrived there."""
    if move:
        shutil.move(source, destination)
        return file_digest(destination).sha256
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def verify_release(path: str | os.PathLike) -> dict[str, Any]:
    """Re-check every file of a release against its manifest; return the manifest or raise naming files."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ReleaseCorrupt(path, [f"no {MANIFEST_NAME}"])
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for name, expected in manifest.get("files", {}).items():
        file_path = path / name
        if not file_path.is_file():
            problems.append(f"{name}: missing")
            continue
        actual = file_digest(file_path)
        if actual.bytes != expected["bytes"]:
            problems.append(f"{name}: {actual.bytes} bytes, manifest says {expected['bytes']}")
        elif actual.sha256 != expected["sha256"]:
            problems.append(f"{name}: sha256 {actual.sha256} does not match the manifest")
    listed = set(manifest.get("files", {})) | {MANIFEST_NAME}
    problems.extend(
        f"{entry.name}: not in the manifest" for entry in sorted(path.iterdir()) if entry.name not in listed
    )
    if problems:
        raise ReleaseCorrupt(path, problems)
    return manifest


def reviewed_sha256(
    answers_sha256: str, adjudications: Iterable[Mapping[str, Any]], corrections: Iterable[Mapping[str, Any]]
) -> str:
    """The checksum of what reviewers approve and a release ships: the annotators' answers (their export's
    sha256) with the reviewers' adjudications and the QA corrections merged into them. Without either it is
    the export's own sha256; a decision or a correction written after the approval changes it."""
    decided = sorted(json.dumps(dict(e), sort_keys=True, default=str) for e in adjudications)
    corrected = sorted(json.dumps(dict(e), sort_keys=True, default=str) for e in corrections)
    if not decided and not corrected:
        return answers_sha256
    payload = json.dumps({"answers": answers_sha256, "adjudications": decided, "corrections": corrected})
    return hashlib.sha256(payload.encode()).hexdigest()
