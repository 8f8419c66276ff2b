"""Simulated annotators: named sessions that answer a running server's tasks through its HTTP API.

Each answer is decided by a random generator seeded with ``(seed, session name, task hash)``, so the same seed
gives the same answers whatever the order tasks arrive in. Besides agreeing with the task (its ``answer`` or
``accept``, else "accept"), an annotator may ``reject``, ``ignore``, flag (``"flagged": true``) or disagree:
give a different span set, label or choice on the same input, derived from the task itself (drop, shift or
relabel a span, pick another option, answer a binary question the other way). Every answer carries a model
``score`` in ``meta`` (one per task, the same for every annotator).

Sessions take turns one answer at a time (each runs at ``speed`` answers per second; 0 = no waiting), which
keeps the order of requests, and so the way tasks are shared out, the same from run to run.

With a ``reference`` (tasks by input hash, e.g. the source stream with its reference labels), a served task
of the same input is answered from the reference's labels instead of what the task shows: an annotator
redoing rework reads the reviewer's comment and starts again from what is right.
"""

from __future__ import annotations

import copy
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox.prodigy.errors import ProdigyError
from sandbox.prodigy.tasks import ANSWERS, INPUT_HASH, TASK_HASH

MANUAL_VIEW_SUFFIX = "_manual"
REFERENCE_FIELDS = ("answer", "spans", "label", "accept")
"""What an annotator takes from the reference task of the same input."""


@dataclass(frozen=True)
class Behaviour:
    """How often an annotator disagrees, rejects, ignores and flags (each a probability)."""

    disagree: float = 0.15
    reject: float = 0.05
    ignore: float = 0.05
    flag: float = 0.03

    def __post_init__(self) -> None:
        for name in ("disagree", "reject", "ignore", "flag"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ProdigyError(f"--{name} must be between 0 and 1, not {getattr(self, name)}")
        if self.reject + self.ignore > 1.0:
            raise ProdigyError(f"--reject plus --ignore must not exceed 1 ({self.reject} + {self.ignore})")


def _rng(*parts: object) -> random.Random:
    """A generator seeded from its parts' text (stable across processes, unlike ``hash()``)."""
    return random.Random("|".join(str(part) for part in parts))


def model_score(seed: int, task: dict[str, Any]) -> float:
    meta = task.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("score"), int | float):
        return meta["score"]
    return round(_rng(seed, "score", task[TASK_HASH]).random(), 4)


def _token_at(tokens: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    return tokens[index] if 0 <= index < len(tokens) else None


def _shift_span(task: dict[str, Any], span: dict[str, Any], rng: random.Random) -> bool:
    """Widen the span by one token on one side; False when the task has no tokens to do it with."""
    tokens = task.get("tokens") or []
    if "token_start" not in span or "token_end" not in span:
        return False
    options = []
    if after := _token_at(tokens, span["token_end"] + 1):
        options.append(("token_end", "end", after))
    if before := _token_at(tokens, span["token_start"] - 1):
        options.append(("token_start", "start", before))
    if not options:
        return False
    token_key, char_key, token = rng.choice(options)
    span[token_key] = token["id"] if "id" in token else tokens.index(token)
    span[char_key] = token[char_key]
    if "text" in span and isinstance(task.get("text"), str):
        span["text"] = task["text"][span["start"] : span["end"]]
    return True


def _disagree_on_spans(answer: dict[str, Any], rng: random.Random, labels: list[str]) -> None:
    spans = answer["spans"]
    index = rng.randrange(len(spans))
    move = rng.choice(["drop", "shift", "relabel"])
    other_labels = [label for label in labels if label != spans[index].get("label")]
    if move == "relabel" and other_labels:
        spans[index]["label"] = rng.choice(other_labels)
    elif move == "shift" and _shift_span(answer, spans[index], rng):
        return
    else:
        del spans[index]


def _add_span(answer: dict[str, Any], rng: random.Random, labels: list[str]) -> bool:
    """Mark one token as an entity (a manual task nobody else marked anything in)."""
    tokens = answer.get("tokens") or []
    if not tokens or not labels:
        return False
    position = rng.randrange(len(tokens))
    token = tokens[position]
    token_id = token.get("id", position)
    span = {"start": token["start"], "end": token["end"], "token_start": token_id, "token_end": token_id}
    answer["spans"] = [{**span, "label": rng.choice(labels)}]
    return True


def _flip(answer: dict[str, Any]) -> None:
    answer["answer"] = "reject" if answer["answer"] == "accept" else "accept"


def disagree(answer: dict[str, Any], rng: random.Random, labels: list[str], manual: bool) -> None:
    """Change the answer in place into one another annotator of the same input would not give."""
    options = [option["id"] for option in answer.get("options") or [] if "id" in option]
    if options:
        others = [option for option in options if option not in answer.get("accept", [])]
        if others:
            answer["accept"] = [rng.choice(others)]
            return
    if manual:
        if answer.get("spans"):
            _disagree_on_spans(answer, rng, labels)
            return
        if _add_span(answer, rng, labels):
            return
    other_labels = [label for label in labels if label != answer.get("label")]
    if "label" in answer and other_labels and rng.random() < 0.5:
        answer["label"] = rng.choice(other_labels)
    else:
        _flip(answer)


@dataclass
class SimulatedAnnotator:
    """One person's answers: deterministic in (seed, name, task)."""

    name: str
    seed: int
    behaviour: Behaviour
    labels: list[str]
    manual: bool
    reference: dict[Any, dict[str, Any]] = field(default_factory=dict)

    def answer(self, task: dict[str, Any]) -> dict[str, Any]:
        rng = _rng(self.seed, self.name, task[TASK_HASH])
        answer = copy.deepcopy(task)
        reference = self.reference.get(task.get(INPUT_HASH))
        if reference is not None:
            for key in REFERENCE_FIELDS:
                answer.pop(key, None)
                if key in reference:
                    answer[key] = copy.deepcopy(reference[key])
        task = answer
        answer["answer"] = task["answer"] if task.get("answer") in ANSWERS else "accept"
        options = [option["id"] for option in task.get("options") or [] if "id" in option]
        if options and "accept" not in answer:
            answer["accept"] = [options[abs(task.get(INPUT_HASH, 0)) % len(options)]]
        roll = rng.random()
        if roll < self.behaviour.ignore:
            answer["answer"] = "ignore"
        elif roll < self.behaviour.ignore + self.behaviour.reject:
            answer["answer"] = "reject"
        elif rng.random() < self.behaviour.disagree:
            disagree(answer, rng, self.labels, self.manual)
        if rng.random() < self.behaviour.flag:
            answer["flagged"] = True
        meta = answer["meta"] if isinstance(answer.get("meta"), dict) else {}
        answer["meta"] = {**meta, "score": model_score(self.seed, task)}
        return answer


class ProdigyClient:
    """The calls Prodigy's web app makes, over HTTP."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.auth = auth
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.http.request(method, self.url + path, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise ProdigyError(f"cannot reach the Prodigy server at {self.url}: {err}") from None
        if response.status_code >= 400:
            detail = response.text[:500]
            raise ProdigyError(f"{method} {self.url}{path} answered {response.status_code}: {detail}")
        return response.json()

    def project(self) -> dict[str, Any]:
        return self._call("GET", "/project")

    def questions(self, session_id: str) -> list[dict[str, Any]]:
        return self._call("POST", "/get_session_questions", {"session_id": session_id})["tasks"]

    def give_answers(self, session_id: str, answers: list[dict[str, Any]]) -> float | None:
        return self._call("POST", "/give_answers", {"answers": answers, "session_id": session_id})["progress"]

    def end_session(self, session_id: str) -> None:
        self._call("POST", "/end_session", {"session_id": session_id})


@dataclass
class _Session:
    annotator: SimulatedAnnotator
    session_id: str
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    progress: float | None = None
    done: bool = False
    due: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.counts[answer] for answer in ANSWERS)

    def summary(self) -> str:
        answers = ", ".join(f"{answer} {self.counts[answer]}" for answer in ANSWERS)
        progress = "?" if self.progress is None else f"{self.progress:.0%}"
        flagged = self.counts["flagged"]
        return (
            f"{self.session_id}: {self.answered} answered ({answers}, flagged {flagged}), progress {progress}"
        )


def annotate(
    url: str,
    dataset: str,
    names: list[str],
    seed: int = 1,
    behaviour: Behaviour | None = None,
    speed: float = 0.0,
    limit: int | None = None,
    auth: tuple[str, str] | None = None,
    log: Callable[[str], None] = print,
    reference: dict[Any, dict[str, Any]] | None = None,
) -> dict[str, Counter[str]]:
    """Answer the server's stream as the named sessions until it runs dry (or each gave ``limit`` answers).

    Returns the answer counts per session id (accept, reject, ignore, flagged).
    """
    client = ProdigyClient(url, auth)
    project = client.project()
    if project.get("dataset") != dataset:
        served = project.get("dataset")
        raise ProdigyError(f"the server at {url} annotates dataset {served!r}, not {dataset!r}")
    labels = list(project.get("config", {}).get("labels") or [])
    manual = str(project.get("view_id", "")).endswith(MANUAL_VIEW_SUFFIX)
    behaviour = behaviour or Behaviour()
    sessions = [
        _Session(
            SimulatedAnnotator(name, seed, behaviour, labels, manual, dict(reference or {})),
            session_id=f"{dataset}-{name}",
        )
        for name in names
    ]
    step = 1.0 / speed if speed > 0 else 1.0
    started = time.monotonic()

    def finish(session: _Session) -> None:
        flush(session)
        client.end_session(session.session_id)
        session.done = True
        log(f"{session.summary()}, finished")

    def flush(session: _Session) -> None:
        if session.outbox:
            session.progress = client.give_answers(session.session_id, session.outbox)
            session.outbox = []
            log(session.summary())

    while active := [session for session in sessions if not session.done]:
        session = min(active, key=lambda candidate: candidate.due)
        if speed > 0:
            time.sleep(max(0.0, started + session.due - time.monotonic()))
        session.due += step
        if not session.pending:
            session.pending.extend(client.questions(session.session_id))
            if not session.pending:
                finish(session)
                continue
        answer = session.annotator.answer(session.pending.popleft())
        session.outbox.append(answer)
        session.counts[answer["answer"]] += 1
        session.counts["flagged"] += bool(answer.get("flagged"))
        if limit is not None and session.answered >= limit:
            finish(session)
        elif not session.pending:
            flush(session)
    log(f"done: {sum(session.answered for session in sessions)} answers from {len(sessions)} sessions")
    return {session.session_id: session.counts for session in sessions}
