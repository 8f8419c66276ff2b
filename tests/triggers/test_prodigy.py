"""ProdigyBatchTrigger run directly with asyncio against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from prodigy_opentext.core.records import BatchTarget
from prodigy_opentext.hooks.prodigy import ProdigyHook
from prodigy_opentext.triggers.prodigy import ProdigyBatchTrigger
from tests.hooks import prodigy_support as support
from tests.hooks.prodigy_support import sample_rows, set_connection

prodigy_sqlite_conn = support.prodigy_sqlite_conn
prodigy_conn = support.prodigy_conn
closed_port = support.closed_port

EVENT_TIMEOUT = 120.0


def answers(annotator: str, count: int, question: int = 0) -> list[dict]:
    """``count`` answers by one annotator; another ``question`` on the same inputs is another task hash."""
    return [
        dict(
            task,
            answer="accept",
            _task_hash=task["_task_hash"] + question,
            _annotator_id=f"news-{annotator}",
            _session_id=f"news-{annotator}",
        )
        for task in sample_rows("textcat_docs_issues", count)
    ]


def test_serialize_round_trips_to_an_importable_trigger():
    trigger = ProdigyBatchTrigger("news", BatchTarget(min_answers=5).as_dict(), "prodigy_x", 2.5, 30.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "dataset": "news",
        "target": {"min_answers": 5, "annotators_per_input": None, "min_inputs": 1},
        "prodigy_conn_id": "prodigy_x",
        "poll_interval": 2.5,
        "error_budget": 30.0,
    }


async def first_event(trigger: ProdigyBatchTrigger, timeout: float = EVENT_TIMEOUT):
    events = trigger.run()
    try:
        return await asyncio.wait_for(anext(events), timeout)
    finally:
        await events.aclose()


def test_fires_once_the_dataset_has_enough_answers(prodigy_conn):
    hook = ProdigyHook()
    hook.add_examples("news", answers("alice", 3))

    async def scenario():
        trigger = ProdigyBatchTrigger("news", BatchTarget(min_answers=6).as_dict(), poll_interval=0.05)
        waiting = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "fired with 3 of 6 answers"
        await asyncio.to_thread(hook.add_examples, "news", answers("bob", 3))
        return await waiting

    event = asyncio.run(scenario())
    assert event.payload["status"] == "reached"
    assert event.payload["counts"] == {"dataset": "news", "answers": 6}


def test_waits_until_every_input_has_distinct_annotators(prodigy_sqlite_conn):
    hook = ProdigyHook()
    target = BatchTarget(annotators_per_input=2, min_inputs=4)
    hook.add_examples("news", answers("alice", 4) + answers("bob", 3))

    async def scenario():
        trigger = ProdigyBatchTrigger("news", target.as_dict(), poll_interval=0.05)
        waiting = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "fired with one input answered once"
        assert (await asyncio.to_thread(hook.add_examples, "news", answers("alice", 4, question=1)))[
            "added"
        ] == 4
        await asyncio.sleep(0.5)
        assert not waiting.done(), "a second answer by the same annotator counted as another annotator"
        await asyncio.to_thread(hook.add_examples, "news", answers("carol", 4)[3:])
        return await waiting

    event = asyncio.run(scenario())
    assert event.payload["status"] == "reached"
    assert event.payload["counts"]["inputs"] == event.payload["counts"]["inputs_done"] == 4
    assert event.payload["target"] == target.as_dict()


def test_missing_dataset_ends_with_an_error_after_the_budget(prodigy_sqlite_conn):
    ProdigyHook().add_examples("news", answers("alice", 1))
    trigger = ProdigyBatchTrigger(
        "nwes", BatchTarget(min_answers=1).as_dict(), poll_interval=0.05, error_budget=0.3
    )
    event = asyncio.run(first_event(trigger))
    assert event.payload["status"] == "error"
    assert "dataset 'nwes' not found" in event.payload["message"]


def test_unreachable_database_ends_with_an_error_naming_the_host(monkeypatch, closed_port):
    connection = {"conn_type": "prodigy", "host": "127.0.0.1", "port": closed_port, "login": "postgres"}
    set_connection(
        monkeypatch, "prodigy_down", {**connection, "schema": "prodigy", "extra": {"db": "postgresql"}}
    )
    target = BatchTarget(min_answers=1).as_dict()
    trigger = ProdigyBatchTrigger("news", target, "prodigy_down", poll_interval=0.05, error_budget=0.3)
    event = asyncio.run(first_event(trigger))
    assert event.payload["status"] == "error"
    assert f"127.0.0.1:{closed_port}" in event.payload["message"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({}, "needs min_answers, annotators_per_input or both"),
        ({"min_answers": 0}, "min_answers must be a positive integer"),
        ({"annotators_per_input": 2, "min_inputs": True}, "min_inputs must be a positive integer"),
    ],
)
def test_batch_targets_are_checked(target, message):
    with pytest.raises(ValueError, match=message):
        BatchTarget(**target)


def test_waiting_holds_no_database_connection_between_polls(prodigy_home_postgres, monkeypatch):
    """Hundreds of deferred waits must not each keep a pooled PostgreSQL connection open."""
    set_connection(
        monkeypatch,
        "prodigy_default",
        {"conn_type": "prodigy", "extra": support.prodigy_config(prodigy_home_postgres)},
    )
    hook = ProdigyHook()
    hook.add_examples("news", answers("alice", 3))
    hook.get_conn().dispose()
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    async def scenario() -> list[int]:
        trigger = ProdigyBatchTrigger("news", BatchTarget(min_answers=6).as_dict(), poll_interval=0.3)
        waiting = asyncio.ensure_future(first_event(trigger))
        seen = []
        for _ in range(4):
            await asyncio.sleep(0.45)
            seen.append(support.execute_sql(prodigy_home_postgres, others)[0][0])
        assert not waiting.done()
        await asyncio.to_thread(hook.add_examples, "news", answers("bob", 3))
        assert (await waiting).payload["status"] == "reached"
        return seen

    assert min(asyncio.run(scenario())) == 0
