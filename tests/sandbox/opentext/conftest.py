"""Shared pieces of the OpenText sandbox tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.opentext_sandbox import OpenTextSandbox


@pytest.fixture
def sandbox(opentext_sandbox_session: OpenTextSandbox) -> Iterator[OpenTextSandbox]:
    """The run's shared sandbox with the project models deployed; faults are cleared afterwards."""
    yield opentext_sandbox_session
    opentext_sandbox_session.clear_faults()


@pytest.fixture
def business_key(request: pytest.FixtureRequest) -> str:
    """A business key no other test uses, so queries by it see only this test's instances."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
