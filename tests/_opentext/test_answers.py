"""OpenText's answers: tokens kept until shortly before they expire; errors in OpenText's own words."""

from __future__ import annotations

import json

import pytest

from prodigy_opentext._opentext.answers import TokenCache, decode_answer
from prodigy_opentext.exceptions import (
    OpenTextAuthError,
    OpenTextError,
    OpenTextNotFoundError,
    OpenTextUnavailableError,
)


def test_token_cache_refreshes_ahead_of_expiry() -> None:
    cache = TokenCache()
    assert cache.store({"access_token": "abc", "expires_in": 100}, now=0.0) == "abc"
    assert cache.current(now=89.0) == "abc"
    assert cache.current(now=91.0) is None
    with pytest.raises(OpenTextAuthError):
        cache.store({"token_type": "bearer"}, now=0.0)


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (401, {"fault": {"faultstring": "Invalid Access Token", "detail": {"errorcode": "keymanagement"}}},
         OpenTextAuthError, "Invalid Access Token [keymanagement]"),
        (404, {"message": "Could not find a task", "exception": "FlowableObjectNotFoundException"},
         OpenTextNotFoundError, "Could not find a task [FlowableObjectNotFoundException]"),
        (503, {"message": "down for maintenance"}, OpenTextUnavailableError, "down for maintenance"),
        (409, "plain text conflict", OpenTextError, "plain text conflict"),
    ],
)  # fmt: skip
def test_errors_carry_opentexts_own_words_and_status(
    status: int, body: object, kind: type, words: str
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(kind) as raised:
        decode_answer(status, text, "2", method="GET", url="http://ot/workflow/v1/tasks/1")
    assert raised.value.status == status
    assert words in str(raised.value)
    assert "GET http://ot/workflow/v1/tasks/1" in str(raised.value)
    assert OpenTextError(**raised.value.to_dict()).message == raised.value.message
