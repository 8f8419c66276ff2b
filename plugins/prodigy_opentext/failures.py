"""The provider's exceptions that fail a task without its retries: what retrying cannot change.

Each is a type of :mod:`prodigy_opentext.exceptions` and Airflow's ``AirflowFailException`` at once, so a
caller catches the first and Airflow does not retry: a reviewer's rejection, data that breaks the rules,
a name or a dataset that cannot be governed as it is, a missing connection, a release that is refused or
distrusted, an audit log that no longer holds its anchored head. ``exceptions`` itself stays importable
without Airflow, for the rules in ``core/``.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from prodigy_opentext.exceptions import (
    AnnotationValidationError,
    ApprovalRefused,
    ApprovalRejectedError,
    AuditAnchorMismatch,
    ConnectionNotConfigured,
    DatasetNotGovernable,
    QASampleDiffers,
    QuarantineLimitExceeded,
    ReleaseConflict,
    ReleaseNotTrusted,
    UnsafeName,
)


class OpenTextApprovalRejected(ApprovalRejectedError, AirflowFailException):
    """A rejection fails the approval sensor: retrying cannot change a reviewer's decision."""


class AnnotationValidationFailed(AnnotationValidationError, AirflowFailException):
    """The dataset broke the annotation rules: the same data fails again."""


class ReleaseRefused(ApprovalRefused, AirflowFailException):
    """OpenText does not hold the approvals a release needs."""


class ReleaseVersionTaken(ReleaseConflict, AirflowFailException):
    """The version was released with other content; the existing release stays."""


class ReleaseDistrusted(ReleaseNotTrusted, AirflowFailException):
    """A consumer refuses a release it cannot confirm: the files will not move by themselves."""


class NameRefused(UnsafeName, AirflowFailException):
    """A name that cannot be a folder: renaming is the only fix."""


class DatasetRefused(DatasetNotGovernable, AirflowFailException):
    """A dataset that cannot be governed as it is (unknown, no label scheme, no such version)."""


class QASampleChanged(QASampleDiffers, AirflowFailException):
    """A QA round whose sample changed since it opened: start a new round."""


class ConnectionMissing(ConnectionNotConfigured, AirflowFailException):
    """A connection the task needs is not defined."""

    @classmethod
    def named(cls, conn_id: str, conn_type: str) -> ConnectionMissing:
        return cls(
            f"connection {conn_id!r} is not defined: add it as a {conn_type!r} connection (Admin > "
            f"Connections, `airflow connections add {conn_id} --conn-type {conn_type} ...`, or the "
            f"environment variable AIRFLOW_CONN_{conn_id.upper()}; the README's Connections lists its fields)"
        )


class RowsQuarantined(QuarantineLimitExceeded, AirflowFailException):
    """Stored rows are not valid Prodigy examples: a batch is reviewed and released whole or not at all."""


class AuditLogTampered(AuditAnchorMismatch, AirflowFailException):
    """The audit log lost entries that were anchored outside it: nothing is appended until it is restored."""
