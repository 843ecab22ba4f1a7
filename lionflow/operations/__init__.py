"""Operations on a session: communicate (one turn), and workflows: Builder, flow, flow_stream."""

from lionflow.errors import FlowError
from lionflow.operations._events import FlowEvent, FlowResults
from lionflow.operations.builder import Builder, Inputs, Operation
from lionflow.operations.communicate import Turn, communicate
from lionflow.operations.executors import Executor, LocalExecutor, RayExecutor
from lionflow.operations.flow import FlowStream, flow, flow_stream

__all__ = [
    "Builder",
    "Executor",
    "FlowError",
    "FlowEvent",
    "FlowResults",
    "FlowStream",
    "Inputs",
    "LocalExecutor",
    "Operation",
    "RayExecutor",
    "Turn",
    "communicate",
    "flow",
    "flow_stream",
]
