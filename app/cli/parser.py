"""The `qaas` command: its parser, `serve`, `migrate` and `render`; `token` and `sandbox`
commands live in their own modules.

qaas serve [--host H] [--port P]   run the API (GraphiQL at /graphql)
qaas migrate                       apply database migrations
qaas render --network NAME [...]   print the Kubernetes objects QaaS would create for a network
qaas tenant create|list|update|delete, qaas token create|list|revoke
qaas sandbox up|down|status|kubeconfig

A database, kubeconfig or cluster that cannot be used is one sentence on stderr and the exit
code 69 (EX_UNAVAILABLE in sysexits.h); a bad setting or sandbox failure exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable

from app.cli.logformat import configure_logging
from app.cli.render import CLI_HELP as RENDER_HELP
from app.cli.sandbox import add_sandbox_commands
from app.cli.tenants import add_tenant_commands
from app.cli.tokens import add_token_commands
from app.cluster.connect import ClusterConfigError
from app.config import ConfigError, load_settings
from app.domain.enums import Consensus
from app.sandbox.errors import BuildError, SandboxError
from app.store.engine import DatabaseUnavailable
from app.store.migrate import MigrationNeeded

STARTUP_FAULT_EXIT = 69  # a dependency cannot be used: database, kubeconfig, cluster


GC_THRESHOLDS = (10_000, 20, 100)  # CPython's defaults are (700, 10, 10)


def tune_gc() -> None:
    """Fewer garbage collections for a server holding many live objects. Each open
    subscription keeps several hundred objects alive; with CPython's thresholds opening 1,000
    of them spent most of its time in the collector (bench/fanout.py: 3.8 s, 1.6 s with these
    thresholds). What start-up made (modules, the schema, the ORM's mappings) is frozen: full
    collections no longer walk it."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.cli.websocket import uvicorn_config
    from app.server import come_up, create_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    config = uvicorn_config(app, args.host, args.port, settings.header_timeout_seconds)
    server = uvicorn.Server(config)

    async def serve() -> None:
        # On a workstation the database and the cluster come up before the server listens, so
        # a fault is main()'s one sentence, not uvicorn's traceback of the lifespan.
        await come_up(app)
        tune_gc()
        await server.serve()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())
    # uvicorn returns normally when start-up failed; its log said why.
    return 0 if server.started else 1


def _migrate(_: argparse.Namespace) -> int:
    from app.store.migrate import upgrade

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(upgrade(settings.database_url))
    print(f"database at the latest revision: {_safe_url(settings.database_url)}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from app.cli.render import (
        RenderError,
        RenderRequest,
        parse_service_ips,
        peer_names,
        render,
        unknown_ips,
    )

    settings = load_settings()
    try:
        request = RenderRequest(
            network=args.network, consensus=Consensus(args.consensus),
            peers=peer_names(args.peers) if args.peers is not None else tuple(args.peer or ()),
            namespace=args.namespace or settings.namespace, coordinator_ip=args.coordinator_ip,
            service_ips=parse_service_ips(args.service_ip), only=args.only,
        )  # fmt: skip
        sys.stdout.write(render(request, settings))
    except RenderError as error:
        print(f"qaas: {error}", file=sys.stderr)
        return 2
    if unknown_ips(request):  # said on stderr too: it is easy to miss in a pipe to kubectl
        print("qaas: the StatefulSets carry IP placeholders; see --help", file=sys.stderr)
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qaas", description="Quorum as a Service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (GraphiQL at /graphql)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)
    add_tenant_commands(commands)
    add_token_commands(commands)

    render = commands.add_parser(
        "render", help="print the Kubernetes objects QaaS would create for a network",
        description=RENDER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    render.add_argument("--network", required=True, metavar="NAME")
    render.add_argument("--consensus", choices=[c.value for c in Consensus], default="RAFT")
    peers = render.add_mutually_exclusive_group()
    peers.add_argument("--peers", type=int, metavar="N", help="N peers: peer-1 .. peer-N")
    peers.add_argument("--peer", action="append", metavar="NAME", help="a peer (repeatable)")
    render.add_argument("--namespace", metavar="NS", help="set metadata.namespace")
    render.add_argument("--coordinator-ip", metavar="IP",
                        help="join a coordinator running elsewhere: render only peers")  # fmt: skip
    render.add_argument("--service-ip", action="append", default=[], metavar="NODE=IP",
                        help="a node's Service ClusterIP, replacing its placeholder")  # fmt: skip
    render.add_argument("--only", choices=["all", "services", "statefulsets"], default="all")
    render.set_defaults(handler=_render)

    add_sandbox_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (DatabaseUnavailable, ClusterConfigError, MigrationNeeded) as error:
        print(f"qaas: {error}", file=sys.stderr)
        return STARTUP_FAULT_EXIT
    except (SandboxError, BuildError, ConfigError) as error:
        print(f"qaas: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
