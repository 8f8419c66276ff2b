"""BPMN models read from a file, plain XML or base64, and their process key."""

from __future__ import annotations

import base64

import pytest

from prodigy_opentext._opentext.models import model_process_key, read_model_xml

MODEL = """<?xml version="1.0"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">
  <process id="qa_review" isExecutable="true"><startEvent id="start"/></process>
</definitions>"""


def test_model_xml_plain_base64_or_file(tmp_path) -> None:
    path = tmp_path / "qa.bpmn"
    path.write_text(MODEL)
    encoded = base64.b64encode(MODEL.encode()).decode()
    assert read_model_xml(path) == read_model_xml(str(path)) == read_model_xml(encoded) == MODEL
    assert model_process_key(MODEL) == "qa_review"
    with pytest.raises(ValueError, match="neither"):
        read_model_xml("no-such-file.bpmn")
