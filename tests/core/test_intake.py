"""Annotation request intake: what a request must say (every problem named at once), the order approved
requests are provisioned in, how a source becomes the request's Prodigy tasks (tokens for ner, the labels as
options for textcat and choice, the request in each task's meta, deduplicated by task hash, foreign labels
refused by row), the dataset's meta, progress against the target, and plain-text task sources."""

from __future__ import annotations

import copy
import random
import re
from itertools import pairwise

import pytest

from prodigy_opentext.core.intake import (
    PRIORITIES,
    ROWS_NAMED,
    dataset_meta,
    parse_request,
    priority_of,
    progress_figures,
    provisioning_order,
    request_tasks,
    session_name,
    tokens_of,
)
from prodigy_opentext.core.records import read_task_source, set_hashes
from prodigy_opentext.exceptions import RequestRefused

PID = "3f2a9c4e-51d7-4b0a-9e6f-0123456789ab"


def values(**changes) -> dict:
    """The variables of a valid request process, with ``changes`` (``None`` drops a variable)."""
    request = {
        "title": "Support tickets: March!",
        "source": "tickets/march.jsonl",
        "task_type": "ner",
        "labels": ["ORG", "PER"],
        "instructions": "Mark companies and people.",
        "priority": "high",
        "due_date": "2026-03-15",
        "approvers": ["owner@example.com"],
        "annotators": ["alice.smith@example.com", "bob@example.com"],
        "annotations_per_task": 2,
    }
    request.update(changes)
    return {key: value for key, value in request.items() if value is not None}


def request(**changes) -> dict:
    return parse_request(PID, values(**changes), task_id="task-7")


def refusal(**changes) -> list[str]:
    with pytest.raises(RequestRefused) as refused:
        request(**changes)
    return refused.value.problems


# --- parse_request -----------------------------------------------------------------------------------


def test_a_valid_request_is_normalised() -> None:
    assert request() == {
        "process_instance_id": PID,
        "task_id": "task-7",
        "title": "Support tickets: March!",
        "source": "tickets/march.jsonl",
        "task_type": "ner",
        "labels": ["ORG", "PER"],
        "instructions": "Mark companies and people.",
        "priority": 75,
        "due_date": "2026-03-15",
        "approvers": ["owner@example.com"],
        "annotators": {"alice.smith": "alice.smith@example.com", "bob": "bob@example.com"},
        "annotations_per_task": 2,
        "dataset": "support_tickets_march_3f2a9c4e",
    }


def test_fields_are_trimmed_and_the_optional_ones_defaulted() -> None:
    parsed = request(
        title="  Tickets  ",
        source=" tickets.csv ",
        task_type=" TextCat ",
        instructions=None,
        priority=None,
        due_date=None,
        approvers=None,
        annotations_per_task=None,
    )
    assert (parsed["title"], parsed["source"], parsed["task_type"]) == ("Tickets", "tickets.csv", "textcat")
    assert parsed["instructions"] == ""
    assert parsed["priority"] == PRIORITIES["normal"] == 50
    assert parsed["due_date"] is None
    assert parsed["approvers"] == []
    assert parsed["annotations_per_task"] == 1


@pytest.mark.parametrize(
    "labels",
    [
        ["ORG", "PER"],
        [" ORG ", "", "PER"],
        "ORG,PER",
        "ORG, PER",
        "ORG\nPER\n",
        " ORG ,\n PER ,",
    ],
)
def test_labels_come_from_a_list_or_a_comma_or_newline_string(labels) -> None:
    assert request(labels=labels)["labels"] == ["ORG", "PER"]


@pytest.mark.parametrize(
    "annotators",
    [
        ["alice.smith@example.com", "bob@example.com"],
        "alice.smith@example.com,bob@example.com",
        "alice.smith@example.com, bob@example.com",
        "alice.smith@example.com\nbob@example.com\n",
    ],
)
def test_annotators_come_from_a_list_or_a_comma_or_newline_string(annotators) -> None:
    assert request(annotators=annotators)["annotators"] == {
        "alice.smith": "alice.smith@example.com",
        "bob": "bob@example.com",
    }


@pytest.mark.parametrize(
    ("priority", "number"),
    [
        ("urgent", 90),
        ("high", 75),
        ("normal", 50),
        ("low", 25),
        ("HIGH", 75),
        (" Low ", 25),
        (80, 80),
        (0, 0),
        (100, 100),
        (62.9, 62),
    ],
)
def test_named_and_numeric_priorities(priority, number) -> None:
    assert priority_of(priority) == number
    assert request(priority=priority)["priority"] == number


@pytest.mark.parametrize("priority", [True, False, "soon", "", None, [90]])
def test_what_is_not_a_priority(priority) -> None:
    assert priority_of(priority) is None


@pytest.mark.parametrize(
    ("due_date", "iso"),
    [
        ("2026-03-15", "2026-03-15"),
        ("2026-03-15T17:30:00", "2026-03-15"),
        ("2026-03-15 09:00", "2026-03-15"),
        ("", None),
    ],
)
def test_the_due_date_becomes_an_iso_date(due_date, iso) -> None:
    assert request(due_date=due_date)["due_date"] == iso


def test_the_default_dataset_is_the_title_slug_and_the_first_8_hex_of_the_id() -> None:
    assert request()["dataset"] == "support_tickets_march_3f2a9c4e"
    assert request(title="Étiquettes -- Q2 2026")["dataset"] == "tiquettes_q2_2026_3f2a9c4e"
    assert request(title="!!!")["dataset"] == "request_3f2a9c4e"
    long = request(title="word " * 20)["dataset"]
    assert long.startswith("word_" * 7 + "word") and long.endswith("_3f2a9c4e") and len(long) <= 40 + 1 + 8
    assert request(dataset=" tickets_march ")["dataset"] == "tickets_march"


@pytest.mark.parametrize(
    ("email", "session"),
    [
        ("alice.smith@example.com", "alice.smith"),
        ("bob_b-2@example.com", "bob_b-2"),
        ("Carol+intake@example.com", "Carol_intake"),
        ("o'neil dan@example.com", "o_neil_dan"),
        ("+x+@example.com", "x"),
        ("@example.com", "annotator"),
    ],
)
def test_session_names_come_from_the_emails(email, session) -> None:
    assert session_name(email) == session


def test_every_problem_is_named_at_once() -> None:
    problems = refusal(
        title="  ",
        source="",
        task_type="spans",
        labels=[],
        annotators="alice, bob",
        priority="soon",
        due_date="next week",
        annotations_per_task=0,
        dataset="my dataset",
    )
    assert len(problems) == 9
    for problem, start in zip(
        problems,
        [
            "title is empty",
            "source is empty",
            "task_type 'spans' is not one of ner, textcat, choice",
            "labels is empty",
            "annotators must list the team's e-mail addresses",
            "priority 'soon' is not a number or one of urgent, high, normal, low",
            "due_date 'next week' is not a date (YYYY-MM-DD)",
            "annotations_per_task 0 must be a whole number of at least 1",
            "dataset 'my dataset': invalid Prodigy dataset name",
        ],
        strict=True,
    ):
        assert problem.startswith(start), (problem, start)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"title": ""}, "title is empty"),
        ({"title": None}, "title is empty"),
        ({"source": "  "}, "source is empty"),
        ({"task_type": "spans"}, "task_type 'spans'"),
        ({"task_type": None}, "task_type None"),
        ({"labels": []}, "labels is empty"),
        ({"labels": " , \n"}, "labels is empty"),
        ({"labels": ["ORG", 3]}, "labels is empty"),
        ({"annotators": []}, "annotators must list"),
        ({"annotators": "alice, bob@example.com"}, "annotators must list"),
        ({"annotators": ["alice@example.com", 7]}, "annotators must list"),
        ({"priority": "soon"}, "priority 'soon'"),
        ({"priority": True}, "priority True"),
        ({"due_date": "next week"}, "due_date 'next week'"),
        ({"due_date": "2026-02-30"}, "due_date '2026-02-30'"),
        ({"annotations_per_task": 0}, "annotations_per_task 0 "),
        ({"annotations_per_task": -1}, "annotations_per_task -1 "),
        ({"annotations_per_task": True}, "annotations_per_task True "),
        ({"annotations_per_task": "2"}, "annotations_per_task '2' "),
        ({"annotations_per_task": 1.0}, "annotations_per_task 1.0 "),
        ({"dataset": "my dataset"}, "dataset 'my dataset'"),
        ({"dataset": "a,b"}, "dataset 'a,b'"),
    ],
)
def test_each_problem_alone_is_named(changes, problem) -> None:
    problems = refusal(**changes)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_annotations_per_task_cannot_exceed_the_team() -> None:
    assert refusal(annotations_per_task=3) == ["annotations_per_task 3 needs at least 3 annotators, not 2"]
    same_person_twice = ["alice@example.com", "alice@example.com"]
    assert refusal(annotators=same_person_twice) == [
        "annotations_per_task 2 needs at least 2 annotators, not 1"
    ]
    assert request(annotators=same_person_twice, annotations_per_task=1)["annotators"] == {
        "alice": "alice@example.com"
    }
    assert request(annotations_per_task=2)["annotations_per_task"] == 2


# --- provisioning_order ------------------------------------------------------------------------------


def approved(pid: str, priority: int, due_date: str | None) -> dict:
    return {"process_instance_id": pid, "title": pid, "priority": priority, "due_date": due_date}


def test_provisioning_order_is_priority_then_due_date_none_last_then_id() -> None:
    expected = [
        approved("p5", 90, None),
        approved("p3", 75, "2026-01-05"),
        approved("p1", 75, "2026-02-01"),
        approved("p2", 75, "2026-02-01"),
        approved("p0", 75, None),
        approved("p4", 75, None),
        approved("p6", 50, "2025-12-01"),
        approved("p7", 0, "2025-01-01"),
    ]
    for seed in range(5):
        shuffled = expected[:]
        random.Random(seed).shuffle(shuffled)
        assert provisioning_order(shuffled) == expected
    assert provisioning_order([]) == []


def test_parsed_requests_are_provisioned_in_order() -> None:
    low = parse_request("b", values(priority="low", due_date="2026-01-01"))
    urgent_late = parse_request("c", values(priority="urgent", due_date="2026-12-31"))
    urgent_soon = parse_request("d", values(priority=90, due_date="2026-06-01T08:00:00"))
    undated = parse_request("a", values(priority="urgent", due_date=None))
    ordered = provisioning_order([low, undated, urgent_late, urgent_soon])
    assert [r["process_instance_id"] for r in ordered] == ["d", "c", "a", "b"]


# --- tokens_of ---------------------------------------------------------------------------------------


def test_tokens_match_the_text_with_punctuation_split_and_consecutive_ids() -> None:
    text = "Acme Corp. hired Ann-Marie,  3 days ago (in Zürich)!"
    tokens = tokens_of(text)
    assert [t["text"] for t in tokens] == [
        "Acme", "Corp", ".", "hired", "Ann", "-", "Marie", ",", "3", "days", "ago",
        "(", "in", "Zürich", ")", "!",
    ]  # fmt: skip
    assert all(text[t["start"] : t["end"]] == t["text"] for t in tokens)
    assert [t["id"] for t in tokens] == list(range(len(tokens)))
    assert all(a["end"] <= b["start"] for a, b in pairwise(tokens))
    assert set(tokens[0]) == {"text", "start", "end", "id"}


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_blank_text_has_no_tokens(text) -> None:
    assert tokens_of(text) == []


# --- request_tasks -----------------------------------------------------------------------------------


def test_an_empty_source_is_refused() -> None:
    with pytest.raises(RequestRefused) as refused:
        request_tasks(request(), [])
    assert refused.value.problems == ["the source holds no tasks: it is empty"]


def test_labels_outside_the_request_are_named_by_row() -> None:
    tasks = [
        {"text": "fine", "spans": [{"start": 0, "end": 4, "label": "ORG"}]},
        {"text": "two", "spans": [{"start": 0, "end": 3, "label": "MISC"}, {"label": "LOC"}]},
        {"text": "plain"},
        {"text": "binary", "label": "GPE"},
        {"text": "choice", "options": [{"id": "PER"}, {"id": "X"}], "accept": ["PER", "X"]},
        {"text": "own", "label": "PER"},
    ]
    with pytest.raises(RequestRefused) as refused:
        request_tasks(request(), tasks)
    assert refused.value.problems == [
        "task 2: label(s) LOC, MISC not among the request's labels",
        "task 4: label(s) GPE not among the request's labels",
        "task 5: label(s) X not among the request's labels",
    ]


@pytest.mark.parametrize(("bad", "named"), [(ROWS_NAMED, ROWS_NAMED), (23, ROWS_NAMED)])
def test_only_the_first_rows_are_named_and_the_rest_counted(bad, named) -> None:
    tasks = [{"text": f"t{n}", "label": "LOC"} for n in range(bad)] + [{"text": "ok", "label": "ORG"}]
    with pytest.raises(RequestRefused) as refused:
        request_tasks(request(), tasks)
    problems = refused.value.problems
    assert problems[:named] == [
        f"task {n}: label(s) LOC not among the request's labels" for n in range(1, named + 1)
    ]
    rest = bad - named
    assert problems[named:] == ([f"... and {rest} more rows use other labels"] if rest else [])


def test_ner_tasks_get_tokens_unless_they_have_some() -> None:
    own = [{"text": "Acme", "start": 0, "end": 4, "id": 0, "ws": False}]
    out = request_tasks(request(), [{"text": "Acme hired Ann."}, {"text": "Acme", "tokens": own}])
    assert out[0]["tokens"] == tokens_of("Acme hired Ann.")
    assert out[1]["tokens"] == own
    assert all("options" not in task for task in out)


@pytest.mark.parametrize("task_type", ["textcat", "choice"])
def test_textcat_and_choice_tasks_get_the_labels_as_options_unless_they_have_some(task_type) -> None:
    own = [{"id": "PER", "text": "A person"}]
    out = request_tasks(request(task_type=task_type), [{"text": "a"}, {"text": "b", "options": own}])
    assert out[0]["options"] == [{"id": "ORG", "text": "ORG"}, {"id": "PER", "text": "PER"}]
    assert out[1]["options"] == own
    assert all("tokens" not in task for task in out)


def test_tasks_carry_the_request_and_fresh_hashes() -> None:
    tasks = [
        {"text": "a", "meta": {"row": 1}},
        {"text": "b", "_input_hash": 1, "_task_hash": 1, "_session_id": "old"},
        {"text": "c", "_input_hash": 1, "_task_hash": 1},
    ]
    out = request_tasks(request(task_type="textcat"), tasks)
    assert [task["text"] for task in out] == ["a", "b", "c"]
    assert [task["meta"] for task in out] == [{"row": 1, "request": PID}, {"request": PID}, {"request": PID}]
    assert all("_session_id" not in task for task in out)
    for task in out:
        unhashed = {k: v for k, v in task.items() if not k.startswith("_")}
        fresh = set_hashes(copy.deepcopy(unhashed))
        assert (task["_input_hash"], task["_task_hash"]) == (fresh["_input_hash"], fresh["_task_hash"])
    assert len({task["_task_hash"] for task in out}) == 3
    # The options are part of the question, so they are in the task hash.
    assert out[0]["_input_hash"] == set_hashes({"text": "a"})["_input_hash"]
    assert out[0]["_task_hash"] != set_hashes({"text": "a"})["_task_hash"]


def test_duplicates_by_task_hash_are_dropped_keeping_the_first() -> None:
    tasks = [
        {"text": "same", "meta": {"row": 1}},
        {"text": "other", "meta": {"row": 2}},
        {"text": "same", "meta": {"row": 3}},
        {"text": "same", "label": "ORG", "meta": {"row": 4}},  # another question on the same text
        {"text": "other", "meta": {"row": 5}},
    ]
    out = request_tasks(request(), tasks)
    assert [task["meta"]["row"] for task in out] == [1, 2, 4]
    assert out[0]["_input_hash"] == out[2]["_input_hash"]


def test_the_source_tasks_are_not_modified() -> None:
    tasks = [
        {"text": "Acme hired Ann.", "meta": {"row": 1}, "_input_hash": 1, "_task_hash": 2},
        {"text": "b", "spans": [{"start": 0, "end": 1, "label": "ORG"}], "meta": {"row": 2}},
    ]
    before = copy.deepcopy(tasks)
    for task_type in ("ner", "textcat"):
        request_tasks(request(task_type=task_type), tasks)
        assert tasks == before


# --- dataset_meta and progress_figures ---------------------------------------------------------------


def test_the_dataset_meta_records_the_request() -> None:
    assert dataset_meta(request(), "/data/intake/streams/d/tasks.jsonl") == {
        "request": {
            "process_instance_id": PID,
            "title": "Support tickets: March!",
            "priority": 75,
            "due_date": "2026-03-15",
            "approvers": ["owner@example.com"],
        },
        "labels": ["ORG", "PER"],
        "task_type": "ner",
        "instructions": "Mark companies and people.",
        "annotator_emails": {"alice.smith": "alice.smith@example.com", "bob": "bob@example.com"},
        "sessions": ["alice.smith", "bob"],
        "annotations_per_task": 2,
        "stream": "/data/intake/streams/d/tasks.jsonl",
    }
    team = "zoe@example.com, adam@example.com, mia@example.com"
    assert dataset_meta(request(annotators=team), "s")["sessions"] == ["adam", "mia", "zoe"]


@pytest.mark.parametrize(
    ("answers", "tasks", "per_task", "figures"),
    [
        (
            {"tickets-bob": 3, "tickets-alice.smith": 4},
            10,
            2,
            {"answers": 7, "target": 20, "percent": 35.0, "by_annotator": {"alice.smith": 4, "bob": 3}},
        ),
        (
            {"tickets-alice": 1},
            3,
            1,
            {"answers": 1, "target": 3, "percent": 33.3, "by_annotator": {"alice": 1}},
        ),
        ({"tickets-a": 2, "tickets-b": 1}, 3, 1, {"answers": 3, "target": 3, "percent": 100.0}),
        ({"tickets-a": 9, "tickets-b": 4}, 5, 2, {"answers": 13, "target": 10, "percent": 100.0}),
        ({}, 4, 2, {"answers": 0, "target": 8, "percent": 0.0, "by_annotator": {}}),
        ({}, 0, 2, {"answers": 0, "target": 0, "percent": 100.0}),
        ({"other-x": 2, "tickets-tickets-y": 1}, 4, 1, {"by_annotator": {"other-x": 2, "tickets-y": 1}}),
    ],
)
def test_progress_figures(answers, tasks, per_task, figures) -> None:
    got = progress_figures(answers, tasks, per_task, "tickets")
    assert {key: got[key] for key in figures} == figures
    assert got["reached"] is (got["answers"] >= got["target"])
    assert 0 <= got["percent"] <= 100


@pytest.mark.parametrize(("answers", "reached"), [(19, False), (20, True), (21, True)])
def test_progress_is_reached_at_the_target(answers, reached) -> None:
    got = progress_figures({"tickets-alice": answers}, 10, 2, "tickets")
    assert got["reached"] is reached
    assert got["percent"] == (95.0 if answers == 19 else 100.0)


# --- read_task_source: plain text --------------------------------------------------------------------


def test_a_text_file_is_one_task_per_non_empty_line(tmp_path) -> None:
    source = tmp_path / "tickets.txt"
    source.write_text(
        'First ticket.\n\n   \n  indented, kept  \r\n{"text": "not JSON here"}\nlast, no newline',
        encoding="utf-8",
    )
    tasks = read_task_source(source)
    assert [task["text"] for task in tasks] == [
        "First ticket.",
        "  indented, kept  ",
        '{"text": "not JSON here"}',
        "last, no newline",
    ]
    for task in tasks:
        assert set(task) == {"text", "_input_hash", "_task_hash"}
        assert task == set_hashes({"text": task["text"]})


def test_source_format_txt_overrides_the_suffix(tmp_path) -> None:
    source = tmp_path / "tickets.jsonl"
    source.write_text("{not json\nsecond line\n", encoding="utf-8")
    assert [task["text"] for task in read_task_source(source, source_format="txt")] == [
        "{not json",
        "second line",
    ]
    log = tmp_path / "tickets.log"
    log.write_text("one\n", encoding="utf-8")
    assert [task["text"] for task in read_task_source(log, source_format="TXT")] == ["one"]
    upper = tmp_path / "TICKETS.TXT"
    upper.write_text("two\n", encoding="utf-8")
    assert [task["text"] for task in read_task_source(upper)] == ["two"]


def test_a_blank_text_file_has_no_tasks_and_its_request_is_refused(tmp_path) -> None:
    source = tmp_path / "empty.txt"
    source.write_text("\n  \n\n", encoding="utf-8")
    assert read_task_source(source) == []
    with pytest.raises(RequestRefused, match="it is empty"):
        request_tasks(request(), read_task_source(source))


def test_a_text_source_becomes_the_request_tasks(tmp_path) -> None:
    source = tmp_path / "tickets.txt"
    source.write_text("Acme hired Ann.\nAcme hired Ann.\nBob left.\n", encoding="utf-8")
    out = request_tasks(request(), read_task_source(source))
    assert [task["text"] for task in out] == ["Acme hired Ann.", "Bob left."]
    assert out[1]["tokens"] == tokens_of("Bob left.")
    assert out[1]["meta"] == {"request": PID}


@pytest.mark.parametrize(
    ("name", "source_format"), [("tasks.xml", None), ("tasks.txt", "xml"), ("tasks", None)]
)
def test_an_unknown_format_names_the_accepted_ones(tmp_path, name, source_format) -> None:
    source = tmp_path / name
    source.write_text("one\n", encoding="utf-8")
    expected = (
        f"source format {source_format or source.suffix.lstrip('.')!r} is not one of jsonl, json, csv, txt"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        read_task_source(source, source_format=source_format)


IMPROVEMENT = {
    "model": "brand-ner v3",
    "problem": "misses sportswear brands",
    "policy_reference": "POL-7",
    "examples": ["Lululemon leggings.", {"text": "Asics shoes.", "meta": {"channel": "chat"}}],
}


def test_an_improvement_request_for_a_new_dataset_is_annotation_work_from_its_own_labels():
    from prodigy_opentext.core.intake import example_tasks, improvement_request

    values = {**IMPROVEMENT, "labels": ["BRAND"], "annotators": ["alice@example.com"], "task_type": "ner"}
    request = improvement_request("4f1c2d3e-0000", "t-1", values, None)
    assert (request["title"], request["dataset"], request["labels"]) == (
        "brand-ner v3: misses sportswear brands",
        "improve_brand_ner_v3_4f1c2d3e",
        ["BRAND"],
    )
    assert "POL-7" in request["instructions"]
    tasks = example_tasks(values)
    assert [t["text"] for t in tasks] == ["Lululemon leggings.", "Asics shoes."]
    assert tasks[1]["meta"] == {"channel": "chat", "model": "brand-ner v3", "policy_reference": "POL-7"}


def test_an_improvement_request_joining_a_dataset_takes_its_labels_and_team():
    from prodigy_opentext.core.intake import improvement_request

    existing = {"labels": ["BRAND"], "annotator_emails": {"bob": "bob@example.com"}, "task_type": "ner"}
    request = improvement_request("p-2", "t-2", {**IMPROVEMENT, "dataset": "brands"}, existing)
    assert (request["dataset"], request["annotators"], request["labels"]) == (
        "brands",
        {"bob": "bob@example.com"},
        ["BRAND"],
    )


def test_an_improvement_request_names_everything_missing_at_once():
    from prodigy_opentext.core.intake import improvement_request

    with pytest.raises(RequestRefused) as refused:
        improvement_request("p-3", "t-3", {"examples": []}, None)
    problems = " | ".join(refused.value.problems)
    for expected in (
        "model is empty",
        "problem is empty",
        "examples is empty",
        "labels is empty",
        "annotators",
    ):
        assert expected in problems, problems
