"""What a service hands back: the objects it wrote, the operation it started, or refusals.

Example::

    result = refused("name", "no such network", ErrorCode.NOT_FOUND)
    result.errors[0].field     # ("input", "name")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.errors import ErrorCode, UserError
from app.store.read_models import NetworkView, NodeView, OperationView


@dataclass(frozen=True)
class Result:
    network: NetworkView | None = None
    node: NodeView | None = None
    operation: OperationView | None = None
    errors: list[UserError] = field(default_factory=list)


def refused(path: str, message: str, code: ErrorCode) -> Result:
    """A result with one refusal about the input field ``path``."""
    return Result(errors=[UserError(("input", path), message, code)])


def name_refusal(path: str, name: str, problem: str | None) -> list[UserError]:
    """``[INVALID_NAME refusal]`` if there is a ``problem`` with ``name``, else ``[]``."""
    if problem is None:
        return []
    return [UserError(("input", path), f'"{name}" {problem}', ErrorCode.INVALID_NAME)]
