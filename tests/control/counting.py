"""Counting what a piece of the control loop sends: SQL statements on an engine and calls to
the Kubernetes API (a wrapper around the cluster's real caller, taken off afterwards)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import Cluster

WRITES = ("INSERT", "UPDATE", "DELETE")


class Counted:
    """SQL statements sent on an engine, Kubernetes API calls by verb, and how many objects
    each list call returned, while counting."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.listed: list[int] = []

    @property
    def writes(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith(WRITES)]


@contextmanager
def counting(sessions: async_sessionmaker[AsyncSession], cluster: Cluster) -> Iterator[Counted]:
    counted = Counted()
    engine = sessions.kw["bind"].sync_engine

    def statement(*args: Any) -> None:
        counted.statements.append(args[2])

    caller = cluster.caller
    real_call = caller.call

    async def call(verb: str, *args: Any, **kwargs: Any) -> Any:
        counted.calls[verb] += 1
        result = await real_call(verb, *args, **kwargs)
        if verb == "list":
            counted.listed.append(len(result["items"]))
        return result

    event.listen(engine, "before_cursor_execute", statement)
    caller.call = call  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        caller.call = real_call  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", statement)
