"""BPMN execution on SpiffWorkflow, with the Flowable/OpenText dialects and JUEL expressions.

The rest of the sandbox sees only this module's small vocabulary: a deployable `ProcessModel`, and a
`ProcessRun` (one process instance: start it, restore it, complete a user task, fire due timers, cancel
it, serialize it). SpiffWorkflow's own script engine evaluates Python; here every expression goes through
`juel` against the instance's live process variables instead.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
from SpiffWorkflow.bpmn.parser.task_parsers import ConditionalGatewayParser
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.defaults import (
    EndEvent,
    ExclusiveGateway,
    InclusiveGateway,
    NoneTask,
    StartEvent,
    UserTask,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.simple import NoneEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from sandbox.opentext import juel

BPMN_NAMESPACE = "http://www.omg.org/spec/BPMN/20100524/MODEL"
EXTENSION_NAMESPACES = {
    "flowable": "http://flowable.org/bpmn",
    "workflow": "http://workflow.opentext.com",
    "activiti": "http://activiti.org/bpmn",
}
USER_TASK_ATTRIBUTES = (
    "candidateGroups",
    "candidateUsers",
    "assignee",
    "owner",
    "formKey",
    "dueDate",
    "priority",
    "category",
    "possibleOutcomes",
    "initiatorCanCompleteTask",
)
_CONDITION_MARKER = "juel-condition:"
_HTTP_CALLS_SENT = "sandbox_http_calls_sent"
_SERIALIZER = BpmnWorkflowSerializer()


class ModelError(ValueError):
    """A deployed model is not valid BPMN the sandbox can execute."""


class ExecutionError(ValueError):
    """A process could not move on: an expression failed or no gateway flow matched."""


def _extension_attributes(node: etree._Element, names: tuple[str, ...]) -> dict[str, str]:
    """Read ``flowable:x``, ``workflow:x`` (or ``activiti:x``) attributes: the dialects share names."""
    found = {}
    for name in names:
        for namespace in EXTENSION_NAMESPACES.values():
            value = node.get(f"{{{namespace}}}{name}")
            if value is not None and value.strip():
                found[name] = value.strip()
                break
    return found


_OUTCOME_TEST = r"(?:==|\beq\b|!=|\bne\b)"


def _outcomes_tested_after(process_parser: Any, task_node: etree._Element) -> list[str]:
    """The outcome values the exclusive gateway right after a user task (or after the HttpTasks that
    follow it) tests for, in document order.

    ``${outcome == 'approved'}`` or ``${sme_review_outcome == "rejected"}`` on the gateway's flows tell
    the reviewer inbox which buttons to offer, without a form model.
    """
    task_id = task_node.get("id")
    variable = rf"(?:\boutcome|\b{re.escape(task_id)}_outcome)"
    literal = r"""(['"])(?P<value>[^'"]*)\1"""
    patterns = [
        re.compile(rf"{variable}\s*{_OUTCOME_TEST}\s*{literal}"),
        re.compile(rf"{literal}\s*{_OUTCOME_TEST}\s*{variable}"),
    ]
    outcomes: list[str] = []
    for flow in process_parser.get_outgoing_sequence_flows(task_id):
        target = process_parser.get_node_by_id(flow.get("targetRef"))
        while target is not None and target.tag == full_tag("serviceTask"):  # an HttpTask telling of it
            (onward, *_) = process_parser.get_outgoing_sequence_flows(target.get("id")) or [None]
            target = None if onward is None else process_parser.get_node_by_id(onward.get("targetRef"))
        if target is None or target.tag != full_tag("exclusiveGateway"):
            continue
        for gateway_flow in process_parser.get_outgoing_sequence_flows(target.get("id")):
            for condition in gateway_flow.iter(full_tag("conditionExpression")):
                for pattern in patterns:
                    for match in pattern.finditer(condition.text or ""):
                        if match.group("value") not in outcomes:
                            outcomes.append(match.group("value"))
    return outcomes


class _UserTaskParser(TaskParser):
    """Keeps a user task's Flowable/OpenText attributes (unevaluated) in the spec's extensions."""

    def parse_extensions(self, node=None):
        attributes = _extension_attributes(self.node, USER_TASK_ATTRIBUTES)
        declared = attributes.pop("possibleOutcomes", "")
        outcomes = [value.strip() for value in declared.split(",") if value.strip()]
        attributes["outcomes"] = outcomes or _outcomes_tested_after(self.process_parser, self.node)
        return attributes


HTTP_TASK_FIELDS = ("requestMethod", "requestUrl", "requestHeaders", "requestBody", "requestTimeout")
"""The fields of Flowable's (and OpenText's) HttpTask the sandbox executes."""


class _ServiceTaskParser(TaskParser):
    """Keeps an HttpTask's fields (``flowable:type="http"``, ``<flowable:field>`` children), unevaluated:
    they are evaluated when the request is sent, so what they read (a token from the tenant's
    configuration) never lands in the instance's state. Other service tasks are refused."""

    def parse_extensions(self, node=None):
        kind = _extension_attributes(self.node, ("type",)).get("type")
        if kind != "http":
            raise ModelError(
                f"service task '{self.node.get('id')}' is of type {kind!r}: the sandbox executes HttpTasks "
                '(flowable:type="http") only'
            )
        fields = {}
        for field_node in self.node.iter("{*}field"):
            name = field_node.get("name")
            value = field_node.get("stringValue") or field_node.get("expression")
            if value is None:
                value = "".join(
                    child.text or "" for child in field_node if child.tag.endswith(("string", "expression"))
                )
            if name in HTTP_TASK_FIELDS:
                fields[name] = value.strip()
        if "requestUrl" not in fields:
            raise ModelError(f"HttpTask '{self.node.get('id')}' has no requestUrl field")
        return {"http": fields}


class _JuelConditionGatewayParser(ConditionalGatewayParser):
    """Marks gateway conditions so they are evaluated strictly as booleans, as Flowable does."""

    def parse_condition(self, sequence_flow):
        condition = super().parse_condition(sequence_flow)
        return None if condition is None else _CONDITION_MARKER + condition.strip()


class _DialectParser(BpmnParser):
    OVERRIDE_PARSER_CLASSES = {
        full_tag("userTask"): (_UserTaskParser, UserTask),
        # The engine passes an HttpTask at once (the request leaves after the step is stored): a plain task.
        full_tag("serviceTask"): (_ServiceTaskParser, NoneTask),
        full_tag("exclusiveGateway"): (_JuelConditionGatewayParser, ExclusiveGateway),
        full_tag("inclusiveGateway"): (_JuelConditionGatewayParser, InclusiveGateway),
    }


class _JuelEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates every expression SpiffWorkflow asks for as JUEL over the process variables."""

    def __init__(self, variables: MutableMapping[str, Any]):
        super().__init__()
        self.variables = variables

    def evaluate(self, expression, context, external_context=None):
        if expression.startswith(_CONDITION_MARKER):
            return juel.evaluate_condition(expression[len(_CONDITION_MARKER) :], self.variables)
        return juel.evaluate(expression, self.variables)

    def execute(self, script, context, external_context=None):
        raise ExecutionError("script tasks are not supported by the sandbox engine")

    def call_service(self, context, **kwargs):
        raise ExecutionError("service tasks are not supported by the sandbox engine")


class _JuelScriptEngine(PythonScriptEngine):
    def __init__(self, variables: MutableMapping[str, Any]):
        super().__init__(environment=_JuelEnvironment(variables))

    def evaluate(self, task, expression, external_context=None):
        # Let JUEL errors through unwrapped: their message is what the API reports.
        return self.environment.evaluate(expression, task.data, external_context)


@dataclass(frozen=True)
class ProcessModel:
    """The one executable process of a deployed BPMN document."""

    key: str
    name: str
    xml: bytes
    start_messages: tuple[str, ...]
    has_none_start: bool
    activity_names: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Each named element's name by its BPMN id, e.g. ``end_approved`` → ``Batch approved``."""


def parse_model(xml: bytes) -> ProcessModel:
    """Parse and check a BPMN document; it must hold exactly one executable process."""
    try:
        document = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as error:
        raise ModelError(f"modelContent is not well-formed XML: {error}") from None
    if document.tag != f"{{{BPMN_NAMESPACE}}}definitions":
        raise ModelError(f"modelContent is not a BPMN 2.0 document (root element {document.tag})")
    parser = _DialectParser()
    try:
        parser.add_bpmn_xml(document)
        keys = parser.get_process_ids()
        if len(keys) != 1:
            raise ModelError(f"a model must hold exactly one executable process, found {len(keys)}: {keys}")
        spec = parser.get_spec(keys[0])
    except ModelError:
        raise
    except Exception as error:  # SpiffWorkflow reports invalid models with several exception types
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ModelError):  # ours, wrapped by the parser
            cause = cause.__cause__ or cause.__context__
        raise (cause or ModelError(f"the model cannot be executed: {error}")) from None
    start_events = [t for t in spec.task_specs.values() if isinstance(t, StartEvent)]
    return ProcessModel(
        key=keys[0],
        name=parser.get_process_parser(keys[0]).get_name(),
        xml=xml,
        start_messages=tuple(
            t.event_definition.name
            for t in start_events
            if isinstance(t.event_definition, MessageEventDefinition)
        ),
        has_none_start=any(isinstance(t.event_definition, NoneEventDefinition) for t in start_events),
        activity_names={
            str(node.get("id")): str(node.get("name"))
            for node in document.iter(f"{{{BPMN_NAMESPACE}}}*")
            if node.get("id") and node.get("name")
        },
    )


def _load_spec(model: ProcessModel):
    parser = _DialectParser()
    parser.add_bpmn_xml(etree.fromstring(model.xml))
    return parser.get_spec(model.key), parser.get_subprocess_specs(model.key)


@dataclass
class UserTaskView:
    """A waiting user task as the engine sees it; attribute values are already evaluated."""

    id: str
    definition_key: str
    name: str
    description: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HttpCall:
    """An HttpTask the instance passed: its BPMN id and its fields, still unevaluated."""

    task_id: str
    activity_id: str
    fields: dict[str, str]


@dataclass
class TimerFiring:
    """What a fired boundary timer did: which boundary event fired and which user tasks it interrupted."""

    boundary_event_id: str
    interrupted_task_ids: list[str]


def _run_engine(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except (juel.JuelError, ExecutionError) as error:
        raise ExecutionError(str(error)) from None
    except Exception as error:  # SpiffWorkflow raises WorkflowException and plain exceptions alike
        message = str(error).strip()
        unmatched = re.match(r"No conditions satisfied (?:for|on) (\S+)", message)
        if unmatched:
            message = (
                f"No outgoing sequence flow of the exclusive gateway '{unmatched.group(1)}' "
                "could be selected for continuing the process"
            )
        raise ExecutionError(message) from None


class ProcessRun:
    """One process instance in memory: the Spiff workflow plus the variables its expressions read.

    ``variables`` is the live dict of process variables; callers change it (for example the completing
    task's outcome) before asking the run to move on.
    """

    def __init__(self, workflow: BpmnWorkflow, variables: MutableMapping[str, Any]):
        self.workflow = workflow
        self.variables = variables
        workflow.script_engine = _JuelScriptEngine(variables)
        for spec in workflow.spec.task_specs.values():
            if "http" in (getattr(spec, "extensions", None) or {}):
                spec.manual = False  # a plain task (NoneTask) waits for a person; an HttpTask does not

    @classmethod
    def start(cls, model: ProcessModel, variables: MutableMapping[str, Any], message: str | None = None):
        """Start an instance at its none start event, or at the message start event for ``message``."""
        spec, subprocess_specs = _load_spec(model)
        run = cls(BpmnWorkflow(spec, subprocess_specs), variables)
        if message is None:
            if not model.has_none_start:
                raise ExecutionError(
                    f"process '{model.key}' has no none start event; start it by one of its messages "
                    f"{list(model.start_messages)}"
                )
            _run_engine(run.workflow.do_engine_steps)
        else:
            _run_engine(lambda: run._start_by_message(message))
        return run

    def _start_by_message(self, message: str) -> None:
        def is_start_event(task) -> bool:
            return isinstance(task.task_spec, StartEvent)

        ready = self._ready_engine_tasks(exclude=is_start_event)
        while ready:
            for task in ready:
                task.run()
            ready = self._ready_engine_tasks(exclude=is_start_event)
        for task in self.workflow.get_tasks(state=TaskState.READY):
            if is_start_event(task) and not isinstance(
                task.task_spec.event_definition, MessageEventDefinition
            ):
                task.cancel()
        if self.workflow.event_manager.catch(BpmnEvent(MessageEventDefinition(message)), internal=False) == 0:
            raise ExecutionError(f"the process has no message start event for message '{message}'")
        self.workflow.do_engine_steps()

    def _ready_engine_tasks(self, exclude: Callable[[Any], bool]) -> list:
        return [
            t
            for t in self.workflow.get_tasks(state=TaskState.READY)
            if not t.task_spec.manual and not exclude(t)
        ]

    @classmethod
    def restore(cls, state: str, variables: MutableMapping[str, Any]) -> ProcessRun:
        return cls(_SERIALIZER.deserialize_json(state), variables)

    def serialize(self) -> str:
        return _SERIALIZER.serialize_json(self.workflow)

    @property
    def ended(self) -> bool:
        return self.workflow.is_completed()

    @property
    def start_activity_id(self) -> str | None:
        """The BPMN id of the start event the instance started from."""
        starts = [
            t
            for t in self.workflow.get_tasks(state=TaskState.COMPLETED)
            if isinstance(t.task_spec, StartEvent)
        ]
        return starts[0].task_spec.bpmn_id if starts else None

    @property
    def end_activity_id(self) -> str | None:
        """The BPMN id of the end event the instance finished at (the last one reached)."""
        ends = [
            t for t in self.workflow.get_tasks(state=TaskState.COMPLETED) if isinstance(t.task_spec, EndEvent)
        ]
        return max(ends, key=lambda t: t.last_state_change).task_spec.bpmn_id if ends else None

    def _user_tasks(self) -> Iterator:
        for task in self.workflow.get_tasks(state=TaskState.READY):
            if isinstance(task.task_spec, UserTask):
                yield task

    def open_user_tasks(self) -> list[UserTaskView]:
        """The user tasks waiting for a person, with their attribute expressions evaluated now."""
        views = []
        for task in self._user_tasks():
            extensions = dict(getattr(task.task_spec, "extensions", None) or {})
            outcomes = extensions.pop("outcomes", [])
            attributes = _run_engine(
                lambda ext=extensions: {k: juel.evaluate(v, self.variables) for k, v in ext.items()}
            )
            views.append(
                UserTaskView(
                    id=str(task.id),
                    definition_key=task.task_spec.bpmn_id,
                    name=task.task_spec.bpmn_name or task.task_spec.bpmn_id,
                    description=task.task_spec.documentation,
                    attributes=attributes,
                    outcomes=list(outcomes),
                )
            )
        return views

    def current_activity_id(self) -> str | None:
        return next((t.task_spec.bpmn_id for t in self._user_tasks()), None)

    def complete_user_task(self, task_id: str) -> None:
        task = self.workflow.get_task_from_id(uuid.UUID(task_id))
        if task is None or task.state != TaskState.READY or not isinstance(task.task_spec, UserTask):
            raise ExecutionError(f"task '{task_id}' is not waiting in this process instance")

        def complete() -> None:
            task.run()
            self.workflow.do_engine_steps()

        _run_engine(complete)

    def _waiting_timers(self) -> list:
        return [
            t
            for t in self.workflow.get_tasks(state=TaskState.WAITING)
            if isinstance(getattr(t.task_spec, "event_definition", None), TimerEventDefinition)
        ]

    def next_timer_due(self) -> datetime | None:
        """When the earliest waiting timer falls due, in real (wall-clock) UTC time."""
        due = [self._timer_due(t) for t in self._waiting_timers()]
        due = [d for d in due if d is not None]
        return min(due) if due else None

    @staticmethod
    def _timer_due(task) -> datetime | None:
        value = task._get_internal_data("event_value")
        if isinstance(value, dict):  # cycle timers keep {"cycles", "next", "duration"}
            value = value.get("next")
        return TimerEventDefinition.get_datetime(value) if isinstance(value, str) else None

    def shift_timers(self, seconds: float) -> None:
        """Bring every waiting timer ``seconds`` closer: how advancing the sandbox clock reaches timers."""
        for task in self._waiting_timers():
            value = task._get_internal_data("event_value")
            if isinstance(value, dict) and isinstance(value.get("next"), str):
                value["next"] = (
                    TimerEventDefinition.get_datetime(value["next"]) - timedelta(seconds=seconds)
                ).isoformat()
            elif isinstance(value, str):
                shifted = TimerEventDefinition.get_datetime(value) - timedelta(seconds=seconds)
                task._set_internal_data(event_value=shifted.isoformat())

    def fire_due_timers(self) -> list[TimerFiring]:
        """Fire the timers whose time has come and run the engine on; report what each one did."""
        waiting = {t.id: t for t in self._waiting_timers()}
        open_before = {t.id for t in self._user_tasks()}
        _run_engine(lambda: (self.workflow.refresh_timers(), self.workflow.do_engine_steps()))
        fired = [t for t in waiting.values() if t.state == TaskState.COMPLETED]
        interrupted = [
            str(task_id)
            for task_id in open_before
            if self.workflow.get_task_from_id(task_id).state == TaskState.CANCELLED
        ]
        return [
            TimerFiring(
                boundary_event_id=t.task_spec.bpmn_id,
                interrupted_task_ids=interrupted if isinstance(t.task_spec, BoundaryEvent) else [],
            )
            for t in fired
        ]

    def cancel(self) -> None:
        self.workflow.cancel()

    def new_http_calls(self) -> list[HttpCall]:
        """The HttpTasks the instance passed since this was last asked (remembered in its state), in the
        order it passed them: each is to be sent once, after the step that reached it is stored."""
        sent = self.workflow.data.setdefault(_HTTP_CALLS_SENT, [])
        passed = sorted(
            (
                t
                for t in self.workflow.get_tasks(state=TaskState.COMPLETED)
                if "http" in (getattr(t.task_spec, "extensions", None) or {})
            ),
            key=lambda t: t.last_state_change,
        )
        calls = [
            HttpCall(str(t.id), t.task_spec.bpmn_id, dict(t.task_spec.extensions["http"]))
            for t in passed
            if str(t.id) not in sent
        ]
        sent.extend(call.task_id for call in calls)
        return calls
