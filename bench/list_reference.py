"""The reference of bench/list_throughput.py: QaaS's network list served by Strawberry from memory.

The same shape as QaaS's schema for the benchmark's query (Network, Node, their connections and
enums, the same field names and arguments), filled from plain Python objects made at import:
no database, no authentication, no guards. Served by uvicorn::

    python -m uvicorn bench.list_reference:app --host 127.0.0.1 --port 8001

``REFERENCE_NETWORKS`` and ``REFERENCE_NODES`` (environment) size the data (50 and 4).
"""

from __future__ import annotations

import base64
import datetime
import os
import uuid

import strawberry
from strawberry.asgi import GraphQL

from app.domain.enums import Consensus, NetworkStatus, NodeRole, NodeStatus

ConsensusEnum = strawberry.enum(Consensus, name="Consensus")
NodeRoleEnum = strawberry.enum(NodeRole, name="NodeRole")
NodeStatusEnum = strawberry.enum(NodeStatus, name="NodeStatus")
NetworkStatusEnum = strawberry.enum(NetworkStatus, name="NetworkStatus")


def cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"{index}".encode()).decode()


def after_index(after: str | None) -> int:
    return 0 if after is None else int(base64.urlsafe_b64decode(after.encode())) + 1


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Node:
    id: strawberry.ID
    name: str
    role: NodeRoleEnum  # type: ignore[valid-type]
    status: NodeStatusEnum  # type: ignore[valid-type]
    status_reason: str | None
    ip: str | None
    created_at: datetime.datetime


@strawberry.type
class NodeEdge:
    cursor: str
    node: Node


@strawberry.type
class NodeConnection:
    edges: list[NodeEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class Network:
    id: strawberry.ID
    name: str
    consensus: ConsensusEnum  # type: ignore[valid-type]
    status: NetworkStatusEnum  # type: ignore[valid-type]
    coordinator_ip: str | None
    created_at: datetime.datetime
    members: strawberry.Private[list[Node]]

    @strawberry.field
    def nodes(self, first: int = 20, after: str | None = None) -> NodeConnection:
        start = after_index(after)
        page = self.members[start : start + first]
        cursors = [cursor(start + i) for i in range(len(page))]
        return NodeConnection(
            edges=[NodeEdge(cursor=c, node=n) for c, n in zip(cursors, page, strict=True)],
            page_info=PageInfo(
                has_next_page=start + first < len(self.members),
                has_previous_page=after is not None,
                start_cursor=cursors[0] if cursors else None,
                end_cursor=cursors[-1] if cursors else None,
            ),
            total_count=len(self.members),
        )


@strawberry.type
class NetworkEdge:
    cursor: str
    node: Network


@strawberry.type
class NetworkConnection:
    edges: list[NetworkEdge]
    page_info: PageInfo
    total_count: int


def _data(networks: int, nodes: int) -> list[Network]:
    now = datetime.datetime.now(datetime.UTC)
    made = []
    for n in range(networks):
        members = [
            Node(
                id=strawberry.ID(str(uuid.uuid4())),
                name="coordinator" if i == 0 else f"peer-{i}",
                role=NodeRole.COORDINATOR if i == 0 else NodeRole.PEER,
                status=NodeStatus.RUNNING,
                status_reason=None,
                ip=f"10.0.{n}.{i + 1}",
                created_at=now,
            )
            for i in range(nodes)
        ]
        made.append(
            Network(
                id=strawberry.ID(str(uuid.uuid4())),
                name=f"net-{n:03}",
                consensus=Consensus.RAFT,
                status=NetworkStatus.RUNNING,
                coordinator_ip=f"10.0.{n}.1",
                created_at=now,
                members=members,
            )
        )
    return made


NETWORKS = _data(int(os.environ.get("REFERENCE_NETWORKS", "50")),
                 int(os.environ.get("REFERENCE_NODES", "4")))  # fmt: skip


@strawberry.type
class Query:
    @strawberry.field
    def networks(self, first: int = 20, after: str | None = None) -> NetworkConnection:
        start = after_index(after)
        page = NETWORKS[start : start + first]
        cursors = [cursor(start + i) for i in range(len(page))]
        return NetworkConnection(
            edges=[NetworkEdge(cursor=c, node=n) for c, n in zip(cursors, page, strict=True)],
            page_info=PageInfo(
                has_next_page=start + first < len(NETWORKS),
                has_previous_page=after is not None,
                start_cursor=cursors[0] if cursors else None,
                end_cursor=cursors[-1] if cursors else None,
            ),
            total_count=len(NETWORKS),
        )


app = GraphQL[None, None](strawberry.Schema(query=Query), graphql_ide=None)
