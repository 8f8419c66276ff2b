"""Which tasks each session is given: feed_overlap, annotations_per_task, one annotator per task."""

from __future__ import annotations

from sandbox.prodigy.server import TaskRouter, infer_view_id, stream_labels
from sandbox.prodigy.tasks import set_hashes


def stream(count):
    return [set_hashes({"text": f"task {n}"}) for n in range(count)]


def hashes(batch):
    return [task["_task_hash"] for task in batch]


def answer_all(router, session_id, batch):
    for task in batch:
        router.record(session_id, task["_task_hash"])


def test_feed_overlap_gives_every_session_every_task_once():
    tasks = stream(25)
    router = TaskRouter(tasks, cap=None, batch_size=10)
    for session_id in ("d-alice", "d-bob"):
        seen = []
        while batch := router.next_batch(session_id):
            answer_all(router, session_id, batch)
            seen += hashes(batch)
        assert seen == hashes(tasks)
        assert router.progress(session_id) == 1.0
    assert router.progress("d-carol") == 0.0


def test_without_overlap_each_task_goes_to_one_session():
    router = TaskRouter(stream(25), cap=1, batch_size=10)
    alice, bob, carol = (router.next_batch(name) for name in ("alice", "bob", "carol"))
    assert (len(alice), len(bob), len(carol)) == (10, 10, 5)
    assert len(set(hashes(alice + bob + carol))) == 25
    assert router.next_batch("dave") == []
    answer_all(router, "alice", alice)
    assert router.progress("bob") == 0.4, "progress counts tasks done by anyone"


def test_annotations_per_task_caps_the_sessions_per_task():
    router = TaskRouter(stream(4), cap=2, batch_size=10)
    alice, bob, carol = (router.next_batch(name) for name in ("alice", "bob", "carol"))
    assert len(alice) == 4 and len(bob) == 4 and carol == []
    answer_all(router, "alice", alice)
    assert router.next_batch("alice") == [], "answered tasks are not served again"
    assert router.progress("alice") == 0.0
    answer_all(router, "bob", bob)
    assert router.progress("alice") == 1.0


def test_ending_a_session_releases_what_it_held_unanswered():
    router = TaskRouter(stream(3), cap=1, batch_size=10)
    held = router.next_batch("alice")
    router.record("alice", held[0]["_task_hash"])
    assert router.next_batch("bob") == []
    assert router.release("alice") == 2
    assert hashes(router.next_batch("bob")) == hashes(held[1:])


def test_view_id_and_labels_come_from_the_stream():
    manual = {"text": "a", "tokens": [], "spans": [{"start": 0, "end": 1, "label": "X"}, {"label": "Y"}]}
    assert infer_view_id([manual]) == "ner_manual"
    assert infer_view_id([{"text": "a", "spans": [{"label": "X"}]}]) == "ner"
    assert infer_view_id([{"text": "a", "label": "X"}]) == "classification"
    assert infer_view_id([{"text": "a", "options": [{"id": 1}]}]) == "choice"
    assert infer_view_id([{"text": "a", "_view_id": "review"}]) == "review"
    assert stream_labels([manual, {"text": "b", "label": "Z"}]) == ["X", "Y", "Z"]
