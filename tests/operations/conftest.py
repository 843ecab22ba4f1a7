"""Fixtures of the operations tests: a local Ray runtime, started once per module that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    """A local Ray cluster for this module's tests, started as `RayExecutor` starts one (bound to
    127.0.0.1 only): 2 CPUs, a small object store; shut down when the module's tests are done.
    Started from the main thread: Ray ties its processes to the thread that starts them."""
    ray = pytest.importorskip("ray")
    from lionflow.operations import RayExecutor

    if ray.is_initialized():  # (another module left one: ours must have our settings)
        ray.shutdown()
    options = {"object_store_memory": 80 * 1024 * 1024, "log_to_driver": False}
    RayExecutor(num_cpus=2, init_options=options).start()
    try:
        yield
    finally:
        ray.shutdown()
