"""The demo's stories, one module per flow, played in this order; a new flow adds a module and an entry.

:func:`enable_dags` unpauses the DAGs every story runs (once their first scheduled run has passed, so no
run but the stories' picks the batch up); :func:`play` then plays each story in turn into one
:class:`Journal`, which :func:`new_journal` makes with every story's results named, so a summary has the
same keys however far the stories got.
"""

from __future__ import annotations

from scripts.stories._story import FlowFailed, Journal, Story, World
from scripts.stories.batch_approval import BatchApprovalStory
from scripts.stories.escalation import EscalationStory
from scripts.stories.governance import GovernanceStory
from scripts.stories.improvement import ImprovementStory
from scripts.stories.intake import IntakeStory
from scripts.stories.qa import QAStory
from scripts.stories.regulated import RegulatedStory
from scripts.stories.release import ReleaseStory

STORIES: tuple[Story, ...] = (
    IntakeStory(),
    RegulatedStory(),
    EscalationStory(),
    QAStory(),
    BatchApprovalStory(),
    ReleaseStory(),
    ImprovementStory(),
    GovernanceStory(),
)
DAG_IDS = tuple(dag_id for story in STORIES for dag_id in story.dag_ids)

__all__ = ["DAG_IDS", "STORIES", "FlowFailed", "Journal", "World", "enable_dags", "new_journal", "play"]


def new_journal(stories: tuple[Story, ...] = STORIES) -> Journal:
    """An empty journal whose results are every one the stories add, None until they add it."""
    return Journal(results=dict.fromkeys(name for story in stories for name in story.results))


def enable_dags(world: World, dag_ids: tuple[str, ...] = DAG_IDS) -> None:
    """Unpause the DAGs once parsed, and wait until each one's due scheduled run, if any, has finished."""
    world.api.wait_for_dags(dag_ids, timeout=world.timeout, stack=world.stack)
    for dag_id in dag_ids:
        world.api.set_paused(dag_id, False)
    for dag_id in dag_ids:
        world.api.wait_until_idle(dag_id, timeout=world.timeout, stack=world.stack)


def play(world: World, journal: Journal, stories: tuple[Story, ...] = STORIES) -> Journal:
    """Play ``stories`` in order into ``journal`` (kept by the caller, so a failure leaves what was done)."""
    for story in stories:
        story.play(world, journal)
    return journal
