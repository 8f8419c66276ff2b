"""Every exception type the provider raises, in one place.

Plain Python (no Airflow import), so the pure rules of :mod:`prodigy_opentext.core` raise them and callers
catch them without importing Airflow. What retrying cannot change fails a task without its retries: the
Airflow-facing twin of each such error (a subclass that is also an ``AirflowFailException``) is in
:mod:`prodigy_opentext.failures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# --- OpenText Workflow Service --------------------------------------------------------------------------


class OpenTextError(Exception):
    """OpenText Workflow Service refused or failed a call.

    Carries OpenText's own message (``fault.faultstring`` from the gateway, ``message`` and ``exception``
    from the service) and the HTTP status, so an operator's log says what OpenText said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        exception: str | None = None,
        error_code: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        self.exception = exception
        self.error_code = error_code
        super().__init__(self._describe())

    def to_dict(self) -> dict[str, Any]:
        """Fields that rebuild this error as ``OpenTextError(**fields)`` on the far side of a trigger."""
        return {
            "message": self.message,
            "status": self.status,
            "method": self.method,
            "url": self.url,
            "exception": self.exception,
            "error_code": self.error_code,
        }

    def _describe(self) -> str:
        where = f"{self.method} {self.url}" if self.method and self.url else "OpenText Workflow Service"
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        detail = "".join(f" [{part}]" for part in (self.exception, self.error_code) if part)
        return f"{where} failed ({status}): {self.message}{detail}"


class OpenTextAuthError(OpenTextError):
    """OpenText refused the client's credentials or token (HTTP 401/403)."""


class OpenTextNotFoundError(OpenTextError):
    """The process, task, model or variable does not exist (HTTP 404)."""


class OpenTextUnavailableError(OpenTextError):
    """OpenText could not be reached or asked the client to back off (connection error, HTTP 429 or 5xx).

    Raised once the retry budget is spent. ``retry_after`` holds the server's ``Retry-After`` in seconds.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


# --- Approvals ------------------------------------------------------------------------------------------


class ApprovalRejectedError(Exception):
    """A reviewer rejected what was submitted for approval in OpenText.

    ``decision`` is the decision record (outcome, approver, time, comments, process instance id).
    """

    def __init__(self, message: str, decision: Mapping[str, Any]) -> None:
        self.decision = decision
        super().__init__(message)


class ApprovalRefused(Exception):
    """A release was asked for without the approvals OpenText must hold for it."""


# --- Prodigy --------------------------------------------------------------------------------------------


class ConnectionNotConfigured(LookupError):
    """A connection the provider needs is not defined; the message says how to add it."""


class ProdigyDatabaseError(ConnectionError):
    """Prodigy's database cannot be reached or opened; the message names the host or file."""


class DatasetNotFoundError(LookupError):
    """The named dataset does not exist in Prodigy's database."""


class DatasetNotGovernable(ValueError):
    """A dataset that cannot be governed as it is: unknown, without a label scheme, or without the version
    asked for. The message says what to set, and where."""


class InvalidRecord(ValueError):
    """A record that is not a valid Prodigy example.

    ``row`` is a line number or an example id; ``where`` says which (``"row"``, ``"line"``, ``"example id"``).
    """

    def __init__(self, row: int | str, field: str, reason: str, *, where: str = "row") -> None:
        super().__init__(f"{where} {row}: field {field!r}: {reason}")
        self.row = row
        self.field = field
        self.reason = reason
        self.where = where


class InvalidRecords(ValueError):
    """Every bad row of a source that is checked whole before anything is written."""

    def __init__(self, source: str, errors: list[InvalidRecord]) -> None:
        shown = "; ".join(str(error) for error in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"{source}: {len(errors)} invalid rows: {shown}{more}")
        self.source = source
        self.errors = errors


class QuarantineLimitExceeded(ValueError):
    """More rows failed validation than the export allows; the manifest names the quarantine file."""

    def __init__(self, manifest: Mapping[str, Any], max_fraction: float) -> None:
        super().__init__(
            f"dataset {manifest['dataset']!r}: {manifest['quarantined']} of {manifest['read']} rows failed "
            f"validation (allowed fraction {max_fraction}); see {manifest['quarantine_path']}"
        )
        self.manifest = manifest
        self.max_fraction = max_fraction


class UnsafeName(ValueError):
    """A dataset name, version or run id that would not stay inside its folder as a path."""


class ConsensusError(ValueError):
    """The answers cannot be merged as given (an unsorted stream said to be sorted, a task hash reused)."""


class SubmissionInvalid(ValueError):
    """What reviewers submitted in OpenText cannot be taken as it is; ``problems`` names each, for the
    message that sends the task back to them."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class AdjudicationInvalid(SubmissionInvalid):
    """Reviewers' decisions on a case that cannot be written as they are."""


class QAJudgementsInvalid(SubmissionInvalid):
    """A QA reviewer's judgements of a sample that cannot be recorded as they are."""


class QASampleDiffers(ValueError):
    """The sample a QA round's process carries is not the one the batch gives now (its corrections
    changed since the round opened): its judgements cannot be recorded against it."""


class RequestRefused(SubmissionInvalid):
    """An annotation request, or its source, that cannot be provisioned as it is."""


# --- Validation -----------------------------------------------------------------------------------------


class SuiteDefinitionError(ValueError):
    """A suite file in the suite directory is not usable (names the file and the expectation)."""


class AnnotationValidationError(Exception):
    """The dataset broke annotation rules; names each failed rule with sample rows. ``summary`` has all."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self.summary = summary
        self.failures = [result for result in summary["expectations"] if not result["success"]]
        lines = [
            f"annotation validation failed: {len(self.failures)} of {summary['statistics']['evaluated']} "
            f"rules broken"
        ]
        for failure in self.failures:
            count = failure.get("unexpected_count")
            counted = f" ({count} of {failure.get('element_count')} rows)" if count is not None else ""
            lines.append(f"- {failure['frame']}.{failure['rule']}{counted}: " + "; ".join(failure["samples"]))
        super().__init__("\n".join(lines))


# --- Releases and the audit log -------------------------------------------------------------------------


class ReleaseError(Exception):
    """A release could not be written or read as a release."""


class ReleaseConflict(ReleaseError):
    """The version exists with other content; ``differences`` names each differing file or field."""

    def __init__(self, dataset: str, version: str, differences: list[str]) -> None:
        self.dataset = dataset
        self.version = version
        self.differences = differences
        super().__init__(
            f"release {dataset} {version} already exists with different content: " + "; ".join(differences)
        )


class ReleaseCorrupt(ReleaseError):
    """A written release no longer matches its manifest; ``problems`` names each file."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"release {path} does not match its manifest: " + "; ".join(problems))


class ReleaseNotTrusted(ReleaseError):
    """A release a consumer was pointed at is not one the project wrote: outside the release root, or
    listing approvals OpenText does not hold."""


class AuditLogError(Exception):
    """The log cannot be extended: its chain is broken or its end is torn (names the line)."""


class AuditAnchorMismatch(AuditLogError):
    """The log no longer holds the head anchored outside it: entries were cut off, or the file was deleted
    or rewritten (names the anchored entry, and when and where it was anchored)."""
