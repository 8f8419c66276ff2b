"""Exception types of the provider.

This module imports nothing from Airflow so that plain-Python domain modules can raise and catch these types.
"""

from __future__ import annotations

from typing import Any


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


class ApprovalRejectedError(Exception):
    """A reviewer rejected what was submitted for approval in OpenText.

    ``decision`` is the decision record (outcome, approver, time, comments, process instance id).
    """

    def __init__(self, message: str, decision: dict[str, Any]) -> None:
        self.decision = decision
        super().__init__(message)
