"""BPMN models as OpenText takes and lists them: plain, base64 or a file; their process key and checksum."""

from __future__ import annotations

import base64
import binascii
import hashlib
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BPMN_NAMESPACE = "http://www.omg.org/spec/BPMN/20100524/MODEL"


def read_model_xml(path_or_xml: str | Path) -> str:
    """BPMN XML from a file path, plain XML or base64-encoded XML."""
    if isinstance(path_or_xml, Path):
        return path_or_xml.read_text(encoding="utf-8")
    text = path_or_xml.strip()
    if text.startswith("<"):
        return path_or_xml
    try:
        if Path(text).is_file():
            return Path(text).read_text(encoding="utf-8")
    except OSError:  # too long for a file name: base64 content
        pass
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{text[:80]!r} is neither a BPMN file, BPMN XML nor base64") from err


def model_process_key(xml: str) -> str:
    """The id of the executable process a BPMN document defines (its process definition key)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise ValueError(f"BPMN model is not well-formed XML: {err}") from err
    keys = [
        key
        for element in root.iter(f"{{{BPMN_NAMESPACE}}}process")
        if element.get("isExecutable", "true").lower() != "false" and (key := element.get("id"))
    ]
    if len(keys) != 1:
        raise ValueError(f"a BPMN model must define exactly one executable process; found {keys or 'none'}")
    return keys[0]


def model_xml_of(model: Mapping[str, Any]) -> str | None:
    """The XML of a deployed model as OpenText lists it (plain or base64 ``modelContent``)."""
    content = model.get("modelContent")
    if not isinstance(content, str):
        return None
    return content if content.lstrip().startswith("<") else read_model_xml(content)


def content_checksum(xml: str) -> str:
    """Checksum of a model's XML, blind to line endings and surrounding whitespace."""
    normalised = "\n".join(line.rstrip() for line in xml.strip().splitlines())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()
