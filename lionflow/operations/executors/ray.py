"""`RayExecutor`: each operation's model call or user step runs as a Ray task.

The driver keeps what makes a flow a flow (the session, the turns, the events and their order,
cancellation); a task gets only what its work needs and streams its output back
(``num_returns="streaming"``), batched per `batch_ms` because each return costs a round trip.
The worker side is `lionflow.operations.executors._remote`.

Ray's streaming generator is read with blocking calls, from a worker thread (`anyio.to_thread`)
that the reading task can abandon when it is cancelled: the task is then cancelled in Ray
(`ray.cancel`), which also ends that thread's wait. This works the same under asyncio and trio.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any

import anyio

from lionflow.errors import ConfigurationError, LionflowError, MissingDependency
from lionflow.operations.executors._remote import Entry, ModelJob, Secret, StepJob, operation_task, revive
from lionflow.services.chunk import Chunk
from lionflow.services.imodel import iModel
from lionflow.services.response import Response, ResponseAssembler

# Batches a task may send ahead of the driver's reading: a slow consumer slows the task (and so the
# provider stream), as it slows an operation in-process, instead of filling the object store.
AHEAD = 32

# Settings that cannot travel: they act on this process (a handler's callbacks run here).
_LOCAL_ONLY = frozenset({"streaming_handler"})


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("ray", "ray", "ray", what="RayExecutor") from exc
    return ray


def _truthy(value: str | None, default: bool) -> bool:
    return default if value is None else value.lower() in ("true", "1")


def start_local_runtime(*, num_cpus: int | None = None, **options: Any) -> None:
    """Start a Ray runtime in this process, bound to 127.0.0.1 only (node, GCS, object manager),
    without the dashboard and usage statistics. Call it from the main thread (Ray ties its
    processes to the thread that starts them). `options` go to `ray.init`."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray turns "127.0.0.1" into the address of the default route unless its single-node mode is
    # on: it reads this variable when imported, and the processes it starts (which keep it) read it
    # from their environment. Only for this start: joining a cluster later must not see it.
    variable = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    previous = os.environ.get(variable)
    os.environ[variable] = "0"
    imported = "ray" in sys.modules
    try:
        ray = _import_ray()
        constants = ray._private.ray_constants
        # What it is without our variable (imported just now, Ray read ours), restored after.
        unset = not constants.IS_WINDOWS_OR_OSX
        before = constants.ENABLE_RAY_CLUSTER if imported else _truthy(previous, unset)
        constants.ENABLE_RAY_CLUSTER = False  # (when imported earlier, the variable came too late)
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **options)
        finally:
            constants.ENABLE_RAY_CLUSTER = before
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


class RayExecutor:
    """Run each operation's model call or user step as a Ray task::

        results = await flow(builder, executor=RayExecutor())

    `address`: None joins the Ray runtime already initialised in this process, or starts a local
    one (bound to 127.0.0.1, `num_cpus` CPUs, no dashboard, no usage statistics); ``"auto"`` or
    ``"ray://host:port"`` connects to a cluster (`ray.init(address=...)`). The runtime starts on
    first use, which blocks for a few seconds: call `start()` first to choose when, from the main
    thread.

    A model travels as its settings (`iModel.settings()`) and is rebuilt in the task; its API key,
    when it was given one, travels through Ray's object store wrapped so that it never shows, and
    is absent from the task's arguments; a model without one reads the provider's environment
    variable on the worker. Chunks come back in batches: what the task produced within `batch_ms`
    milliseconds of a batch's first chunk (0: each chunk its own return). Each task asks Ray for
    `task_cpus` CPUs. A cancelled task that is still running `cancel_grace` seconds later (code that
    never yields to its event loop, which Ray's interrupt cannot reach) is force-killed, its worker
    with it. Ray's own retries are off (a step may have side effects); the model's retry
    rules apply inside the task.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        batch_ms: float = 10,
        num_cpus: int | None = None,
        task_cpus: float = 1,
        cancel_grace: float = 5,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise ConfigurationError(f"address must be None, 'auto' or 'ray://host:port', not {address!r}")
        # (`not >= 0`: NaN too, which no comparison admits)
        if not isinstance(batch_ms, int | float) or isinstance(batch_ms, bool) or not batch_ms >= 0:
            raise ConfigurationError(f"batch_ms must be a number >= 0, not {batch_ms!r}")
        if not isinstance(task_cpus, int | float) or isinstance(task_cpus, bool) or not task_cpus >= 0:
            raise ConfigurationError(f"task_cpus must be a number >= 0, not {task_cpus!r}")
        if (
            not isinstance(cancel_grace, int | float)
            or isinstance(cancel_grace, bool)
            or not cancel_grace >= 0
        ):
            raise ConfigurationError(f"cancel_grace must be a number of seconds >= 0, not {cancel_grace!r}")
        _import_ray()  # a missing extra is reported here, not in the middle of a flow
        self.address = address
        self.batch_ms = batch_ms
        self.num_cpus = num_cpus
        self.task_cpus = task_cpus
        self.cancel_grace = cancel_grace
        self._init_options = dict(init_options or {})
        self._task: Any = None
        self._started = False  # whether this executor initialised the runtime (`shutdown`)

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, batch_ms={self.batch_ms})"

    def start(self) -> None:
        """Join or start the Ray runtime now (else the first operation does). A cluster that cannot
        be reached at `address` raises `ConfigurationError`."""
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is None:
                start_local_runtime(num_cpus=self.num_cpus, **self._init_options)
            else:
                try:
                    ray.init(address=self.address, **self._init_options)
                except ConnectionError as exc:  # (Ray's own message says what to set)
                    raise ConfigurationError(f"no Ray cluster at {self.address!r}: {exc}") from exc
            self._started = True
        if self._task is None:
            self._task = ray.remote(operation_task).options(
                num_returns="streaming",
                _generator_backpressure_num_objects=AHEAD,
                max_retries=0,
                retry_exceptions=False,
                num_cpus=self.task_cpus,
            )

    def shutdown(self) -> None:
        """Shut down the Ray runtime if this executor initialised it (started a local one, or
        connected to a cluster); one it joined is left to whoever started it. Without this, a
        runtime the executor started lives as long as the process (Ray stops it at exit)."""
        if self._started:
            self._started = False
            self._task = None
            _import_ray().shutdown()

    def task_arguments(
        self, model: iModel, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[Any, ...]:
        """The arguments the Ray task of this model call is given: the model's settings and the
        request, and the API key only as an object reference (so never in a task's arguments)."""
        job = self._model_job(model, messages, params)
        return self._arguments(job, model.adapter.settings.api_key)

    def _arguments(self, job: ModelJob | StepJob, api_key: str | None) -> tuple[Any, ...]:
        self.start()
        ray = _import_ray()
        secrets = (ray.put(Secret(api_key)),) if api_key else ()
        return (job, secrets, self.batch_ms / 1000)

    def submit(self, job: ModelJob | StepJob, api_key: str | None = None) -> Any:
        """Start `job` as a Ray task; its `ObjectRefGenerator`. A job that cannot be pickled raises
        `ConfigurationError` naming the part that cannot travel."""
        task, arguments = self._task_of(), self._arguments(job, api_key)
        try:
            return task.remote(*arguments)
        except Exception as exc:
            reason = _cannot_travel(job)
            if reason is None:
                raise
            # (Ray's own report, a page long and coloured, stays the cause)
            raise ConfigurationError(f"{reason}; it cannot be sent to a Ray task") from exc

    def _task_of(self) -> Any:
        self.start()
        return self._task

    @staticmethod
    def _model_job(model: iModel, messages: list[dict[str, Any]], params: dict[str, Any]) -> ModelJob:
        local = sorted(_LOCAL_ONLY.intersection(params))
        if local:
            raise ConfigurationError(f"{', '.join(local)} cannot travel to a Ray task; leave it out")
        return ModelJob(settings=model.settings(), messages=list(messages), params=dict(params))

    def invoke(self, model: iModel, messages: list[dict[str, Any]], **params: Any) -> RayCall:
        job = self._model_job(model, messages, params)
        return RayCall(self, job, model.adapter.settings.api_key, model=model.model, provider=model.provider)

    def run_step(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        items = inspect.isasyncgenfunction(function) or inspect.isasyncgenfunction(
            getattr(function, "__call__", None)  # noqa: B004 (an object whose __call__ is one)
        )
        job = StepJob(function=function, args=args, items=items)
        return self._items(job) if items else self._result(job)

    async def _result(self, job: StepJob) -> Any:
        remote = Remote(self, job)
        try:
            while True:  # (`batch` raises if the task ends without its result)
                for kind, value in await remote.batch():
                    if kind == "error":
                        raise revive(value[0])
                    if kind == "result":
                        return value
        finally:
            remote.cancel()

    async def _items(self, job: StepJob) -> AsyncGenerator[Any, None]:
        remote = Remote(self, job)
        try:
            while True:
                for kind, value in await remote.batch():
                    if kind == "item":
                        yield value
                    elif kind == "error":
                        raise revive(value[0])
                    else:
                        return
        finally:
            remote.cancel()


def _cannot_travel(job: ModelJob | StepJob) -> str | None:
    """Which part of `job` cannot be pickled, and why; None if every part can."""
    from ray import cloudpickle

    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    if isinstance(job, ModelJob):
        name = job.settings.get("name")
        parts = [(f"the {key} of model {name!r}", value) for key, value in job.settings.items()]
        parts += [(f"the call parameter {key!r}", value) for key, value in job.params.items()]
        parts.append(("the messages", job.messages))
    else:
        step = getattr(job.function, "__qualname__", None) or repr(job.function)
        parts = [(f"step {step}", job.function), (f"the argument of step {step}", job.args)]
    for what, value in parts:
        try:
            dumps(value)
        except Exception as exc:
            return f"{what} cannot be pickled ({type(exc).__name__}: {exc})"
    return None


def _force_after(generator: Any, grace: float) -> None:
    """In a thread of its own: kill the cancelled task if it still runs after `grace` seconds (its
    code blocks the interrupt `ray.cancel` raised), so that no task outlives its flow."""
    ray = _import_ray()
    try:
        ready, _ = ray.wait([generator.completed()], timeout=grace)
        if not ready:
            ray.cancel(generator, force=True)
    except Exception:  # (the runtime was shut down meanwhile: nothing is left to stop)
        return


def _read(generator: Any) -> list[Entry] | None:
    """In a worker thread: the task's next batch, None when it has no more."""
    import ray

    try:
        ref = next(generator)
    except StopIteration:
        return None
    batch: list[Entry] = ray.get(ref)
    return batch


class Remote:
    """One operation's Ray task, seen from the driver: its entries as they come, `cancel()`."""

    def __init__(self, executor: RayExecutor, job: ModelJob | StepJob, api_key: str | None = None) -> None:
        self._executor = executor
        self._job = job
        self._api_key = api_key
        self._generator: Any = None
        self._finished = False
        self._cancelled = False

    async def batch(self) -> list[Entry]:
        """The next batch; a failure of the task itself (its worker died) as a `LionflowError`."""
        if self._generator is None:
            self._generator = self._executor.submit(self._job, self._api_key)
        limiter = anyio.CapacityLimiter(1)  # a thread of its own: the default pool is shared
        try:
            batch = await anyio.to_thread.run_sync(
                _read, self._generator, abandon_on_cancel=True, limiter=limiter
            )
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._finished = True
            raise LionflowError(f"the operation's Ray task failed: {type(exc).__name__}: {exc}") from exc
        if batch is None:
            self._finished = True
            raise LionflowError("the operation's Ray task ended without a result")
        if batch[-1][0] in ("result", "error"):
            self._finished = True
        return batch

    def cancel(self) -> None:
        """Cancel the task if it may still run (idempotent, never blocks on the task)."""
        if self._generator is not None and not self._finished and not self._cancelled:
            self._cancelled = True
            _import_ray().cancel(self._generator)
            threading.Thread(
                target=_force_after, args=(self._generator, self._executor.cancel_grace), daemon=True
            ).start()


class RayCall:
    """A model call running in a Ray task, as a turn sees it (`CallLike`): its chunks, `aclose()`
    from any task, and the `Response` once it has ended (the task's; partial if it ended early)."""

    def __init__(
        self, executor: RayExecutor, job: ModelJob, api_key: str | None, *, model: str, provider: str
    ) -> None:
        self._remote = Remote(executor, job, api_key)
        self._pending: deque[Chunk] = deque()
        self._assembler = ResponseAssembler(model=model, provider=provider)  # for a partial Response
        self._started = time.monotonic()
        self._response: Response[Any] | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._scope: anyio.CancelScope | None = None

    @property
    def response(self) -> Response[Any] | None:
        return self._response

    def __aiter__(self) -> RayCall:
        return self

    async def __anext__(self) -> Chunk:
        while not self._pending:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._ended:
                raise StopAsyncIteration
            await self._fill()
        chunk = self._pending.popleft()
        self._assembler.add(chunk)
        return chunk

    async def _fill(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                batch = await self._remote.batch()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self._end(incomplete=True, error=exc)
                self._error = exc
                return
            finally:
                self._scope = None
        if scope.cancelled_caught:  # aclose() from another task: the loop ends as if done
            return
        for kind, value in batch:
            if kind == "chunk":
                self._pending.append(value)
            elif kind == "result":
                self._response = value
                self._ended = True
            else:
                error = revive(value[0])
                response = value[1]
                self._error = error
                self._response = response
                self._end(incomplete=True, error=error)

    def _end(self, *, incomplete: bool, error: BaseException | None = None) -> None:
        self._ended = True
        if self._response is None:
            self._response = self._assembler.build(
                duration=time.monotonic() - self._started,
                time_to_first_chunk=None,
                incomplete=incomplete,
                finish_reason="error" if error is not None else "cancelled",
                error=error,
            )

    async def aclose(self) -> None:
        """Stop the call: its Ray task is cancelled (its provider stream closes there), and the
        chunks received so far make the partial `Response`."""
        if not self._ended:
            self._pending.clear()
            self._end(incomplete=True)
            self._remote.cancel()
            if self._scope is not None:
                self._scope.cancel()
