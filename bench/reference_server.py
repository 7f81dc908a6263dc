"""The reference for read benchmarks: QaaS's list shape served by Strawberry from memory.

The same types and field names as QaaS's schema for the list query of issue 14 (networks with
their nodes: ids, names, consensus, statuses, Relay connections with ``first``), answered from
Python objects built at start-up: no database, no authentication, no cache. It is what "the
speed of memory" means for the same GraphQL work, so benchmarks print QaaS's figure beside it.

Usage::

    python bench/reference_server.py --port 8765 [--networks 50] [--nodes 4]

It listens on 127.0.0.1 only, at /graphql, until killed.
"""

from __future__ import annotations

import argparse
import base64
import enum
import sys
from collections.abc import Sequence

import strawberry
import uvicorn
from strawberry.asgi import GraphQL

HOST = "127.0.0.1"


@strawberry.enum
class Consensus(enum.Enum):
    RAFT = "RAFT"
    IBFT = "IBFT"


@strawberry.enum
class NetworkStatus(enum.Enum):
    RUNNING = "RUNNING"


@strawberry.enum
class NodeStatus(enum.Enum):
    RUNNING = "RUNNING"


@strawberry.enum
class NodeRole(enum.Enum):
    COORDINATOR = "COORDINATOR"
    PEER = "PEER"


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
    role: NodeRole
    status: NodeStatus


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
    consensus: Consensus
    status: NetworkStatus
    members: strawberry.Private[list[Node]]

    @strawberry.field
    def nodes(self, first: int = 20) -> NodeConnection:
        return page(self.members, first, NodeEdge, NodeConnection)


@strawberry.type
class NetworkEdge:
    cursor: str
    node: Network


@strawberry.type
class NetworkConnection:
    edges: list[NetworkEdge]
    page_info: PageInfo
    total_count: int


def cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i:{index}".encode()).decode()


def page(items: list[object], first: int, edge: type, connection: type) -> object:
    shown = items[:first]
    edges = [edge(cursor=cursor(i), node=item) for i, item in enumerate(shown)]
    info = PageInfo(
        has_next_page=len(items) > first,
        has_previous_page=False,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return connection(edges=edges, page_info=info, total_count=len(items))


def global_id(kind: str, number: int) -> strawberry.ID:
    return strawberry.ID(base64.b64encode(f"{kind}:{number:032x}".encode()).decode())


def build(networks: int, nodes: int) -> strawberry.Schema:
    data: list[object] = []
    for n in range(networks):
        members = [
            Node(
                id=global_id("Node", n * 1000 + k),
                name="coordinator" if k == 0 else f"peer-{k}",
                role=NodeRole.COORDINATOR if k == 0 else NodeRole.PEER,
                status=NodeStatus.RUNNING,
            )
            for k in range(nodes)
        ]
        data.append(
            Network(
                id=global_id("Network", n),
                name=f"net-{n:03d}",
                consensus=Consensus.RAFT,
                status=NetworkStatus.RUNNING,
                members=members,
            )
        )

    @strawberry.type
    class Query:
        @strawberry.field
        def networks(self, first: int = 20) -> NetworkConnection:
            return page(data, first, NetworkEdge, NetworkConnection)  # type: ignore[return-value]

    return strawberry.Schema(query=Query)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args(argv)
    app = GraphQL(build(args.networks, args.nodes), graphql_ide=None)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
