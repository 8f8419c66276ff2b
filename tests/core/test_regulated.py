"""Rules of regulated content: redaction, who a grant allows, what goes back to a case, frozen datasets."""

from __future__ import annotations

import json

import pytest

from prodigy_opentext.core.regulated import (
    EMAIL_MASK,
    PHONE_MASK,
    access_meta,
    allowed_team,
    completion_metadata,
    frozen_reason,
    mask_contact_details,
    parse_case,
    redact_tasks,
    revoked_meta,
)
from prodigy_opentext.exceptions import RequestRefused


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Mail jane.roe+claims@mail.example.org now", f"Mail {EMAIL_MASK} now"),
        ("Call +44 20 7946 0958.", f"Call {PHONE_MASK}."),
        ("Ring (555) 123-4567 or 555.123.4567", f"Ring {PHONE_MASK} or {PHONE_MASK}"),
        ("Fax 02079460958 today", f"Fax {PHONE_MASK} today"),
        ("Claim filed 2026-12-01, paid 01/12/2026.", "Claim filed 2026-12-01, paid 01/12/2026."),
        (
            "Seen 12.03.2024 13:45, covered 2024-01-01 2024-12-31",
            "Seen 12.03.2024 13:45, covered 2024-01-01 2024-12-31",
        ),
        (
            "Customer since 2019-2024; on 3/4/25 call 555-123-4567",
            f"Customer since 2019-2024; on 3/4/25 call {PHONE_MASK}",
        ),
        ("Berlin 030/1234567, short 5551234", f"Berlin {PHONE_MASK}, short {PHONE_MASK}"),
        ("claim 2024-001234", f"claim {PHONE_MASK}"),
        ("Order 42 of 123-45 units", "Order 42 of 123-45 units"),
        ("Nothing to hide here.", "Nothing to hide here."),
    ],
)
def test_the_shipped_redaction_masks_emails_and_phone_numbers_only(text: str, masked: str) -> None:
    assert mask_contact_details(text) == masked


def test_redacted_tasks_lose_what_named_the_unmasked_text() -> None:
    tasks = [
        {
            "text": "Call 555 123 4567",
            "tokens": [{"text": "Call"}],
            "spans": [],
            "_input_hash": 1,
            "meta": {},
        },
        {"text": "Plain", "tokens": [{"text": "Plain"}], "_input_hash": 2},
    ]
    masked, changed = redact_tasks(tasks, mask_contact_details)
    assert changed == 1
    assert masked[0] == {"text": f"Call {PHONE_MASK}", "meta": {}}
    assert masked[1] == tasks[1]
    assert redact_tasks(tasks, None) == (tasks, 0)


def test_redaction_reaches_every_text_a_task_carries_but_its_structure() -> None:
    csv_row = {
        "text": "Refund the Zara coat",
        "html": "<b>mail a@b.org</b>",
        "meta": {"email": "jane@example.org", "notes": ["call 555 123 4567"], "row": 7},
        "options": [{"id": "A", "text": "ring 555 123 4567"}],
        "label": "BRAND",
    }
    ((masked,), changed) = redact_tasks([csv_row], mask_contact_details)
    assert changed == 1
    assert masked["text"] == "Refund the Zara coat" and masked["html"] == f"<b>mail {EMAIL_MASK}</b>"
    assert masked["meta"] == {"email": EMAIL_MASK, "notes": [f"call {PHONE_MASK}"], "row": 7}
    assert masked["options"] == [{"id": "A", "text": f"ring {PHONE_MASK}"}] and masked["label"] == "BRAND"


def case(**values: object) -> dict[str, object]:
    return {
        "title": "Claims",
        "content_source": "claims.jsonl",
        "classification": "confidential",
        "task_type": "ner",
        "labels": ["BRAND"],
        "annotators": ["alice@example.com"],
        **values,
    }


def test_a_case_names_its_content_and_classification() -> None:
    assert parse_case("p1", case())["source"] == "claims.jsonl"
    with pytest.raises(RequestRefused) as refused:
        parse_case("p1", case(classification=" ", content_source=None))
    assert refused.value.problems[0].startswith("classification is empty")
    assert any(p.startswith("content_source is empty") for p in refused.value.problems)


def test_a_grant_names_its_annotators_and_not_the_officer() -> None:
    assert allowed_team({"allowed_annotators": "alice@example.com, bob@example.com"}, "o@example.com") == {
        "alice": "alice@example.com",
        "bob": "bob@example.com",
    }
    refusals = {
        "no annotators": ({"allowed_annotators": []}, "names no annotators"),
        "not an e-mail": ({"allowed_annotators": ["alice"]}, "must list the team's e-mail addresses"),
        "self": ({"allowed_annotators": ["O@example.com"]}, "granted access to themselves"),
        "clash": ({"allowed_annotators": ["a@x.org", "a@y.org"]}, "one Prodigy session name"),
    }
    for values, named in refusals.values():
        with pytest.raises(RequestRefused, match=named):
            allowed_team(values, "o@example.com")
    with pytest.raises(RequestRefused, match="does not say who granted access"):
        allowed_team({"allowed_annotators": ["alice@example.com"]}, None)


def test_a_revoked_access_freezes_the_dataset() -> None:
    meta = access_meta("p1", "confidential", "ab" * 32, "o@example.com", {"alice": "alice@example.com"})
    assert meta["regulated"] is True and frozen_reason(meta) is None
    frozen = revoked_meta(meta["access"], "consent withdrawn")
    assert frozen["sessions"] == [] and frozen["access"]["case"] == "p1"
    reason = frozen_reason(frozen)
    assert reason is not None and "case p1 cancelled: consent withdrawn" in reason
    assert frozen_reason({}) is None


def test_completion_metadata_holds_figures_and_hashes_never_texts() -> None:
    manifest = {
        "version": "b12",
        "created": "2026-12-02T10:00:00+00:00",
        "source": {"dataset": "claims", "sessions": ["claims-alice", "claims-bob"]},
        "files": {"annotations.jsonl": {"sha256": "f" * 64}},
        "counts": {"examples": 2, "by_answer": {"accept": 2}},
        "label_distribution": {"BRAND": 2},
    }
    answers = [
        {"text": "Secret one", "_timestamp": 1764669600},
        {"text": "Secret two", "_timestamp": 1764673200},
    ]
    figures = completion_metadata(manifest, "e" * 64, answers)
    assert figures["annotators"] == ["alice", "bob"] and figures["examples"] == 2
    assert (figures["first_answer"], figures["last_answer"]) == (
        "2025-12-02T10:00:00+00:00",
        "2025-12-02T11:00:00+00:00",
    )
    assert figures["annotations_sha256"] == "f" * 64 and figures["manifest_sha256"] == "e" * 64
    assert "Secret" not in json.dumps(figures)
