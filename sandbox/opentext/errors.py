"""The two error shapes of OpenText Workflow Service.

The API gateway in front of the service answers authentication and traffic failures with an Apigee
``fault`` body; the workflow service itself (Flowable) answers with ``message`` and ``exception``.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """A workflow-service error: ``{"message": "Not found", "exception": "<what was not found>"}``."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, exception: str):
        super().__init__(exception)
        self.exception = exception

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"message": self.status.phrase.capitalize(), "exception": self.exception}, status_code=self.status
        )


class NotFound(ServiceError):
    status = HTTPStatus.NOT_FOUND


class BadRequest(ServiceError):
    status = HTTPStatus.BAD_REQUEST


class Forbidden(ServiceError):
    """What Flowable's ``FlowableForbiddenException`` answers: the user may not do this."""

    status = HTTPStatus.FORBIDDEN


class Conflict(ServiceError):
    status = HTTPStatus.CONFLICT


def gateway_fault(
    status: int, faultstring: str, errorcode: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An API-gateway error: ``{"fault": {"faultstring": ..., "detail": {"errorcode": ...}}}``."""
    return JSONResponse(
        {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}},
        status_code=status,
        headers=headers,
    )
