"""Hashing and JSONL reading as Prodigy does them."""

from __future__ import annotations

import murmurhash
import pytest

from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import read_jsonl, set_hashes

INT32 = range(-(2**31), 2**31)


def test_hashes_are_signed_32_bit_murmurhash_values():
    task = set_hashes({"text": "Apple released a phone", "label": "ORG"})
    assert task["_input_hash"] in INT32 and task["_task_hash"] in INT32
    hashes = [set_hashes({"text": f"row {n}"})["_input_hash"] for n in range(200)]
    assert any(value < 0 for value in hashes), "murmurhash values are signed"
    assert task["_input_hash"] == murmurhash.hash('{"text": "Apple released a phone"}')


def test_input_hash_follows_the_input_and_task_hash_the_task_keys():
    first = set_hashes({"text": "Apple released a phone", "label": "ORG", "meta": {"source": "a"}})
    other_label = set_hashes({"text": "Apple released a phone", "label": "PRODUCT"})
    other_text = set_hashes({"text": "Pears", "label": "ORG"})
    assert first["_input_hash"] == other_label["_input_hash"]
    assert first["_task_hash"] != other_label["_task_hash"]
    assert first["_input_hash"] != other_text["_input_hash"]
    spans = [{"start": 0, "end": 5, "label": "ORG"}]
    with_spans = set_hashes({"text": "Apple released a phone", "spans": spans})
    rescored = set_hashes({"text": "Apple released a phone", "spans": [{**spans[0], "score": 0.3}]})
    assert with_spans["_task_hash"] == rescored["_task_hash"], "a model score does not change the task"
    assert with_spans["_task_hash"] != set_hashes({"text": "Apple released a phone"})["_task_hash"]


def test_every_input_key_counts_and_a_task_without_one_is_still_hashed():
    assert set_hashes({"image": "a.png"})["_input_hash"] != set_hashes({"image": "b.png"})["_input_hash"]
    assert set_hashes({"html": "<b>x</b>"})["_input_hash"] != set_hashes({"input": "<b>x</b>"})["_input_hash"]
    assert set_hashes({"question": "a"})["_input_hash"] != set_hashes({"question": "b"})["_input_hash"]


def test_existing_hashes_are_kept_unless_overwritten():
    task = {"text": "x", "_input_hash": 1, "_task_hash": 2}
    assert set_hashes(dict(task)) == task
    assert set_hashes(dict(task), overwrite=True)["_input_hash"] == set_hashes({"text": "x"})["_input_hash"]
    half = set_hashes({"text": "x", "_input_hash": 1})
    assert half["_input_hash"] == set_hashes({"text": "x"})["_input_hash"]


def test_read_jsonl_names_the_file_and_line_of_bad_input(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n[1, 2]\n')
    with pytest.raises(ProdigyError, match=r"tasks\.jsonl, line 4: a JSON list, not an object"):
        list(read_jsonl(path))
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(ProdigyError, match=r"tasks\.jsonl, line 2: not valid JSON"):
        list(read_jsonl(path))
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert [number for number, _ in read_jsonl(path)] == [1, 3]
