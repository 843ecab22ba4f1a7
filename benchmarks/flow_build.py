"""Building and validating a workflow: time against its size, which should grow linearly.

    .venv/bin/python benchmarks/flow_build.py [--sizes 2000 8000]

For each size N, from an empty session: N `builder.communicate` calls (a chain where every
operation takes its context from the one before, every tenth one sharing a branch with the
previous, the rest on a fresh branch named after the operation), then ``flow_stream(builder)``,
which validates the DAG and prepares every branch. Nothing runs. A linear cost shows as a constant
time per operation across sizes.
"""

from __future__ import annotations

import argparse
import time

import anyio

from lionflow import Session
from lionflow.operations import Builder, Operation, flow_stream
from lionflow.testing import ScriptedModel


def build(size: int) -> tuple[float, float]:
    session = Session()
    session.services.register(ScriptedModel(), name="m")
    builder = Builder(session=session)
    started = time.perf_counter()
    previous: Operation | None = None
    for index in range(size):
        branch = f"b{index - 1}" if index % 10 == 9 else None
        previous = builder.communicate(
            f"step {index}",
            imodel="m",
            branch=branch,
            name=f"b{index}",
            context_from=[previous] if previous is not None else None,
        )
    built = time.perf_counter()
    stream = flow_stream(builder)
    validated = time.perf_counter()
    del stream
    return built - started, validated - built


async def main(sizes: list[int]) -> None:
    print(f"{'operations':>10}{'build':>10}{'validate':>10}{'us/op':>9}")
    for size in sizes:
        building, validating = build(size)
        per_op = (building + validating) / size * 1e6
        print(f"{size:>10,}{building:>9.3f}s{validating:>9.3f}s{per_op:>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    args = parser.parse_args()
    anyio.run(main, args.sizes)
