"""The server API over real HTTP on 127.0.0.1, with simulated annotators, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest
import requests

from sandbox.prodigy import annotators
from sandbox.prodigy.db import connect
from sandbox.prodigy.errors import ProdigyError

SESSIONS = ("alice", "bob", "carol")
VOLATILE = ("_timestamp",)


@pytest.fixture
def food_tasks(prodigy_samples_dir, tmp_path):
    """Twelve manual NER tasks from the real food export, without their recorded answer."""
    lines = (prodigy_samples_dir / "ner_manual_food.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    tasks = [json.loads(line) for line in lines]
    for task in tasks:
        task.pop("answer", None)
    path = tmp_path / "food_tasks.jsonl"
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks), encoding="utf-8")
    return path


def annotate(url, dataset, **options):
    """The annotators in this process (the CLI runs them the same way; one test goes through it)."""
    return annotators.annotate(url, dataset, list(SESSIONS), log=lambda line: None, **options)


def stored_answers(raw_sql, dataset):
    """(content, session datasets it is linked to) for each example of the dataset, read with plain SQL."""
    rows = raw_sql(
        "SELECT l.example_id, e.content, d.name, d.session FROM link l "
        "JOIN example e ON e.id = l.example_id JOIN dataset d ON d.id = l.dataset_id ORDER BY l.id"
    )
    links = defaultdict(list)
    contents = {}
    for example_id, content, name, session in rows:
        links[example_id].append((name, bool(session)))
        contents[example_id] = json.loads(content)
    return [
        (contents[example_id], [name for name, session in names if session])
        for example_id, names in links.items()
        if (dataset, False) in names
    ]


def by_session_and_task(answers):
    return {
        (answer["_session_id"].split("-", 1)[1], answer["_task_hash"]): {
            key: value for key, value in answer.items() if key not in VOLATILE and not key.endswith("_id")
        }
        for answer, _ in answers
    }


def test_three_sessions_with_feed_overlap_answer_every_task(
    prodigy_home_any, prodigy_server, run_prodigy, raw_sql, food_tasks
):
    url = prodigy_server("food", food_tasks, feed_overlap=True)
    project = requests.get(f"{url}/project", timeout=30).json()
    assert project["dataset"] == "food" and project["view_id"] == "ner_manual"
    assert project["config"]["feed_overlap"] is True and project["config"]["labels"] == ["INGRED"]

    sessions = ",".join(SESSIONS)
    result = run_prodigy(
        "annotate", "--url", url, "--dataset", "food", "--sessions", sessions, "--seed", "7",
        "--disagree", "0.4", "--flag", "0.2",
    )  # fmt: skip
    assert "done: 36 answers from 3 sessions" in result.stdout
    assert "food-alice: 12 answered" in result.stdout

    answers = stored_answers(raw_sql, "food")
    assert len(answers) == 36
    for answer, sessions in answers:
        assert sessions == [answer["_session_id"]], "linked to the dataset and to its session dataset"
        assert answer["_annotator_id"] == answer["_session_id"]
        assert answer["_view_id"] == "ner_manual" and isinstance(answer["_timestamp"], int)
        assert answer["answer"] in ("accept", "reject", "ignore")
        assert 0 <= answer["meta"]["score"] <= 1
    per_session = Counter(answer["_session_id"] for answer, _ in answers)
    assert per_session == {f"food-{name}": 12 for name in SESSIONS}
    assert len({(a["_session_id"], a["_task_hash"]) for a, _ in answers}) == 36, "no task asked twice"

    spans_per_input = defaultdict(set)
    for answer, _ in answers:
        spans = tuple((span["start"], span["end"], span["label"]) for span in answer.get("spans", []))
        spans_per_input[answer["_input_hash"]].add(spans)
    assert any(len(variants) > 1 for variants in spans_per_input.values()), "annotators disagree somewhere"
    assert any(answer.get("flagged") for answer, _ in answers)

    with connect() as db:
        assert db.session_counts("food") == {f"food-{name}": 12 for name in SESSIONS}


def test_seeded_runs_reproduce_and_a_restart_asks_nothing_twice(
    prodigy_home, prodigy_server, raw_sql, food_tasks
):
    first = prodigy_server("first", food_tasks, feed_overlap=True)
    annotate(first, "first", seed=3, limit=5)
    prodigy_server.stop(first)
    assert len(stored_answers(raw_sql, "first")) == 15
    restarted = prodigy_server("first", food_tasks, feed_overlap=True)
    progress = requests.post(
        f"{restarted}/get_session_questions", json={"session_id": "first-alice"}, timeout=30
    )
    assert progress.json()["progress"] == round(5 / 12, 4) and progress.json()["total"] == 15
    requests.post(
        f"{restarted}/end_session", json={"session_id": "first-alice"}, timeout=30
    ).raise_for_status()
    annotate(restarted, "first", seed=3)
    first_answers = stored_answers(raw_sql, "first")
    assert len(first_answers) == 36
    assert len({(a["_session_id"], a["_task_hash"]) for a, _ in first_answers}) == 36

    second = prodigy_server("second", food_tasks, feed_overlap=True)
    annotate(second, "second", seed=3)
    assert by_session_and_task(stored_answers(raw_sql, "second")) == by_session_and_task(first_answers)


def test_annotations_per_task_shares_the_stream_between_sessions(
    prodigy_home_postgres, prodigy_server, raw_sql, food_tasks
):
    url = prodigy_server("shared", food_tasks, annotations_per_task=2)
    annotate(url, "shared", speed=200)
    answers = stored_answers(raw_sql, "shared")
    sessions_per_task = Counter(answer["_task_hash"] for answer, _ in answers)
    assert len(sessions_per_task) == 12 and set(sessions_per_task.values()) == {2}
    assert len({(a["_session_id"], a["_task_hash"]) for a, _ in answers}) == 24
    assert len({a["_session_id"] for a, _ in answers}) == 3


def test_basic_auth_is_required_when_configured(prodigy_home, prodigy_server, food_tasks):
    credentials = {"PRODIGY_BASIC_AUTH_USER": "reviewer", "PRODIGY_BASIC_AUTH_PASS": "s3cret"}
    url = prodigy_server("locked", food_tasks, feed_overlap=True, env=credentials)
    refused = requests.get(f"{url}/project", timeout=30)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.post(
        f"{url}/get_session_questions", json={"session_id": "locked-alice"}, auth=("reviewer", "x")
    )
    assert wrong.status_code == 401
    assert requests.get(f"{url}/project", auth=("reviewer", "s3cret"), timeout=30).status_code == 200

    with pytest.raises(ProdigyError, match=r"GET http://127\.0\.0\.1:\d+/project answered 401"):
        annotate(url, "locked")
    annotate(url, "locked", limit=2, auth=("reviewer", "s3cret"))
    with connect() as db:
        assert db.count_dataset("locked") == 6


def test_only_allowed_named_sessions_may_annotate(prodigy_home, prodigy_server, food_tasks):
    url = prodigy_server("gated", food_tasks, env={"PRODIGY_ALLOWED_SESSIONS": "alice,bob"})

    def post(path, body):
        return requests.post(f"{url}{path}", json=body, timeout=30)

    allowed = post("/get_session_questions", {"session_id": "gated-alice"})
    assert allowed.status_code == 200 and len(allowed.json()["tasks"]) == 10
    stranger = post("/get_session_questions", {"session_id": "gated-mallory"})
    assert stranger.status_code == 403 and "'mallory' is not allowed" in stranger.json()["detail"]
    assert requests.get(f"{url}/get_questions", timeout=30).status_code == 403
    assert requests.get(f"{url}/?session=mallory", timeout=30).status_code == 403
    assert requests.get(f"{url}/?session=bob", timeout=30).status_code == 200
    bare = post("/get_session_questions", {"session_id": "alice"})
    assert bare.status_code == 400 and "'gated-<name>'" in bare.json()["detail"]

    task = allowed.json()["tasks"][0]
    bad = post("/give_answers", {"session_id": "gated-alice", "answers": [{**task, "answer": "maybe"}]})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("answers[0]: 'answer' is 'maybe'")
    good = post("/give_answers", {"session_id": "gated-alice", "answers": [{**task, "answer": "accept"}]})
    assert good.status_code == 200 and good.json()["progress"] == round(1 / 12, 4)
    refused = post(
        "/give_answers", {"session_id": "gated-mallory", "answers": [{**task, "answer": "accept"}]}
    )
    assert refused.status_code == 403
