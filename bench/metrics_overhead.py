"""What counting a GraphQL operation costs: the metrics extension's hook, against an empty hook.

What it does
    Runs ``schema.metrics.OperationMetrics.on_operation`` the way Strawberry runs it (a
    generator made a context manager, entered and left once per operation, counting a query
    with its latency into app/metrics.py's registry), and, in the same run, an extension hook
    that does nothing (the reference: what any operation-level extension costs). Alternating
    rounds; CPU time of this process (``time.process_time``), so other load on the machine
    inflates both figures less than wall time would.

How to read the figures
    us/op    CPU microseconds per operation, the median of the rounds
    extra    metrics - reference: what the metrics add to one request (the list benchmark's
             request takes about 18 ms: "Reading lists" in docs/performance.md)

Usage::

    flock /tmp/qaas-bench.lock .venv/bin/python bench/metrics_overhead.py [--rounds 5]

Bounded: rounds x ops operations in this process, nothing else started or contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))

from strawberry.extensions.base_extension import SchemaExtension
from strawberry.types.graphql import OperationType

from schema.metrics import OperationMetrics


class Context:
    """The two attributes of Strawberry's ExecutionContext the hook reads."""

    operation_type = OperationType.QUERY
    pre_execution_errors = None


class Empty(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield


def hook(extension_class: type[SchemaExtension]) -> Callable[[], Any]:
    extension = extension_class()
    extension.execution_context = Context()  # type: ignore[assignment]
    return contextlib.contextmanager(types.MethodType(extension_class.on_operation, extension))


def per_op(make: Callable[[], Any], ops: int) -> float:
    started = time.process_time()
    for _ in range(ops):
        with make():
            pass
    return (time.process_time() - started) / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=100_000)
    args = parser.parse_args()
    metrics, reference = hook(OperationMetrics), hook(Empty)
    timed: dict[str, list[float]] = {"metrics": [], "reference": []}
    for _ in range(args.rounds):
        timed["metrics"].append(per_op(metrics, args.ops))
        timed["reference"].append(per_op(reference, args.ops))
    ours, ref = (statistics.median(timed[k]) for k in ("metrics", "reference"))
    print(f"metrics {ours:.2f} us/op | reference (empty hook) {ref:.2f} us/op | "
          f"extra {ours - ref:.2f} us/op")  # fmt: skip


if __name__ == "__main__":
    main()
