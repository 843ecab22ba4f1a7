"""Fixtures of the operations tests: a local Ray runtime, started once per module that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    """A local Ray cluster for this module's tests: 2 CPUs, a small object store, bound to
    127.0.0.1 only (`start_local_runtime`), shut down when the module's tests are done. Started
    from the main thread: Ray ties its processes to the thread that starts them."""
    ray = pytest.importorskip("ray")
    from lionflow.operations.executors.ray import start_local_runtime

    if ray.is_initialized():  # (another module left one: ours must have our settings)
        ray.shutdown()
    start_local_runtime(num_cpus=2, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
