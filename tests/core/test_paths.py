"""Names that become folders: only plain names pass, so nothing is written outside its folder."""

from __future__ import annotations

import pytest

from prodigy_opentext.core.paths import plain_name, run_folder_name
from prodigy_opentext.exceptions import UnsafeName


@pytest.mark.parametrize("name", ["ner_news", "b1234", "demo-batch.v2", "2024", "a" * 200])
def test_plain_names_pass(name):
    assert plain_name(name, "dataset") == name


@pytest.mark.parametrize(
    "name", ["../releases/victim", "/etc", "a/b", "..", ".hidden", "-x", "", "a" * 201, "ner news", "x\\y", 7]
)
def test_names_that_could_leave_their_folder_are_refused_saying_what_to_do(name):
    with pytest.raises(
        UnsafeName, match=r"dataset name .* cannot name a folder: use letters, digits"
    ) as refused:
        plain_name(name, "dataset")
    assert "renamed in Prodigy" in str(refused.value)


@pytest.mark.parametrize(
    ("run_id", "folder"),
    [
        ("manual__2026-12-01T10:00:00+00:00", "manual__2026-12-01T10_00_00_00_00"),
        ("release__news__b12", "release__news__b12"),
        ("../../etc", "etc"),
        ("...", "run"),
    ],
)
def test_run_ids_become_plain_folder_names(run_id, folder):
    assert run_folder_name(run_id) == folder
