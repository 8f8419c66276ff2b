"""OpenText's answers: the JSON of a success, the typed error of a failure, and the bearer token."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prodigy_opentext._opentext.retries import RETRYABLE_STATUSES, parse_retry_after
from prodigy_opentext.exceptions import (
    OpenTextAuthError,
    OpenTextError,
    OpenTextNotFoundError,
    OpenTextUnavailableError,
)


class TokenCache:
    """The bearer token and its expiry, refreshed ahead of expiry so no call starts with a dying token."""

    DEFAULT_LIFETIME = 300.0

    def __init__(self) -> None:
        self._token: str | None = None
        self._refresh_at = 0.0

    def current(self, now: float) -> str | None:
        return self._token if self._token and now < self._refresh_at else None

    def store(self, answer: Any, now: float) -> str:
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise OpenTextAuthError("the token endpoint answered without an access_token")
        lifetime = float(answer.get("expires_in") or self.DEFAULT_LIFETIME)
        self._token = token
        self._refresh_at = now + lifetime - min(60.0, lifetime * 0.1)
        return token

    def clear(self) -> None:
        self._token = None

    def discard(self, token: str) -> None:
        """Forget ``token`` if it is still the cached one (callers sharing the cache may have replaced it)."""
        if self._token == token:
            self._token = None


def describe_error_body(text: str) -> tuple[str, str | None, str | None]:
    """OpenText's own words from an error body: (message, exception, error code)."""
    try:
        body = json.loads(text)
    except ValueError:
        return (text.strip()[:500] or "empty answer", None, None)
    if not isinstance(body, dict):
        return (str(body)[:500], None, None)
    fault = body.get("fault")
    if isinstance(fault, dict):
        detail = fault.get("detail")
        error_code = detail.get("errorcode") if isinstance(detail, dict) else None
        return (str(fault.get("faultstring") or fault), None, error_code)
    if "message" in body or "exception" in body:
        return (str(body.get("message") or ""), body.get("exception"), None)
    if "error" in body:  # OAuth2 token endpoint
        return (str(body.get("error_description") or body["error"]), None, str(body["error"]))
    return (text.strip()[:500], None, None)


def error_from_answer(
    status: int, text: str, *, method: str, url: str, retry_after: float | None = None
) -> OpenTextError:
    message, exception, error_code = describe_error_body(text)
    kind: type[OpenTextError] = OpenTextError
    if status in RETRYABLE_STATUSES:
        return OpenTextUnavailableError(
            message, retry_after=retry_after, status=status, method=method, url=url, exception=exception,
            error_code=error_code,
        )  # fmt: skip
    if status in (401, 403):
        kind = OpenTextAuthError
    elif status == 404:
        kind = OpenTextNotFoundError
    return kind(message, status=status, method=method, url=url, exception=exception, error_code=error_code)


def decode_answer(status: int, text: str, retry_after: str | None, *, method: str, url: str) -> Any:
    """The JSON of a successful answer (None when empty); raise the matching OpenTextError otherwise."""
    if status >= 400:
        raise error_from_answer(
            status, text, method=method, url=url, retry_after=parse_retry_after(retry_after)
        )
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise OpenTextError(
            f"answer is not JSON: {text[:200]!r}", status=status, method=method, url=url
        ) from err


def query_params(params: Mapping[str, Any] | None) -> dict[str, str | int | float] | None:
    """Query parameters as OpenText expects them (booleans as ``true``/``false``; None left out)."""
    if params is None:
        return None
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else value
        for name, value in params.items()
        if value is not None
    }


def unreachable(err: Exception, *, method: str, url: str) -> OpenTextUnavailableError:
    return OpenTextUnavailableError(f"no answer ({type(err).__name__}: {err})", method=method, url=url)
