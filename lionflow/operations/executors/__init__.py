"""Where a flow's operations run: `LocalExecutor` (the default, this process) and `RayExecutor`
(a Ray cluster; the extra ``lionflow[ray]``, imported only when a RayExecutor is made)."""

from lionflow.operations.executors.base import LOCAL, CallLike, Executor, LocalExecutor
from lionflow.operations.executors.ray import RayExecutor

__all__ = ["LOCAL", "CallLike", "Executor", "LocalExecutor", "RayExecutor"]
