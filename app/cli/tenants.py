"""`qaas tenant create|list|update|delete`: an administrator's tenant lifecycle.

qaas tenant create acme [--max-networks N] [--max-nodes N] [--kubeconfig ADMIN_KUBECONFIG]
qaas tenant list
qaas tenant update acme --max-nodes 80 [--kubeconfig ...]
qaas tenant delete acme [--force] [--kubeconfig ...]

``create``, ``update`` and ``delete`` act on the database (``QAAS_DATABASE_URL``) and on the
cluster with an administrator's credentials: ``--kubeconfig``, else ``QAAS_ADMIN_KUBECONFIG``,
else the usual discovery (``QAAS_KUBECONFIG``, ``KUBECONFIG``, ``~/.kube/config``, the running
local sandbox). ``create`` of an existing tenant provisions its namespace again (idempotent).
Where the database is reachable only from QaaS's pod, ``create|update --manifests`` touch no
cluster and print the objects instead (``kubectl exec ... -- qaas tenant create acme
--manifests | kubectl apply -f -``, kubectl with the administrator's credentials), and
``delete --keep-namespace`` leaves the namespace to the administrator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import Cluster
from app.cluster.connect import ClusterConfigError, ClusterTarget, connect, discover
from app.cluster.errors import KubeError
from app.config import Settings, load_settings
from app.control.namespaces import own_namespace, provision, tenant_objects
from app.services.tenancy import TenancyError
from app.services.tenant_admin import create_tenant, delete_tenant, tenant_rows, update_limits
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import prepare
from app.store.models import Tenant
from app.store.unit import write_session


def _admin_target(args: argparse.Namespace, settings: Settings) -> ClusterTarget:
    explicit = args.kubeconfig or os.environ.get("QAAS_ADMIN_KUBECONFIG")
    if explicit:
        return ClusterTarget("kubeconfig", _readable(explicit))
    target = discover(settings.cluster, settings.kubeconfig)
    if target is not None:
        return target
    from app.sandbox.handle import Sandbox

    state = Sandbox.default().state()
    if state is None:
        raise ClusterConfigError(
            "no cluster to provision the tenant in: pass --kubeconfig (an administrator's) "
            "or set QAAS_ADMIN_KUBECONFIG, or start the sandbox (qaas sandbox up)"
        )
    return ClusterTarget("kubeconfig", state.kubeconfig)


def _readable(path: str) -> Path:
    found = Path(path).expanduser()
    if not found.is_file():
        raise ClusterConfigError(f"the admin kubeconfig {found} is not a readable file")
    return found


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await prepare(settings.database_url)
    engine = make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _admin(args: argparse.Namespace, settings: Settings) -> AsyncIterator[Cluster]:
    cluster = await connect(_admin_target(args, settings), settings.namespace, settings=settings)
    try:
        yield cluster
    finally:
        await cluster.close()


def _limits(tenant_max_networks: int, tenant_max_nodes: int) -> str:
    return f"max {tenant_max_networks} networks, {tenant_max_nodes} nodes"


def _print_manifests(tenant: Tenant, settings: Settings) -> None:
    objects = tenant_objects(tenant, settings, with_quota=not own_namespace(tenant, settings))
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))


async def _create(args: argparse.Namespace, settings: Settings) -> int:
    async with _database(settings) as sessions:
        async with write_session(sessions) as session:
            tenant, new = await create_tenant(session, args.name, settings,
                                              max_networks=args.max_networks,
                                              max_nodes=args.max_nodes)  # fmt: skip
        if args.manifests:  # for an administrator's `kubectl apply -f -`
            _print_manifests(tenant, settings)
            return 0
        async with _admin(args, settings) as cluster:
            await provision(cluster, tenant, settings)
    said = "created" if new else "exists; namespace provisioned again"
    print(f"tenant {tenant.name} {said} (namespace {tenant.namespace}, "
          f"{_limits(tenant.max_networks, tenant.max_nodes)})")  # fmt: skip
    if new:
        print(f"next: qaas token create --tenant {tenant.name} --role admin")
    return 0


async def _list(_: argparse.Namespace, settings: Settings) -> int:
    async with _database(settings) as sessions, sessions() as session:
        rows = await tenant_rows(session)
    print(f"{'NAME':<20} {'NAMESPACE':<28} {'NETWORKS':>9} {'NODES':>9} {'TOKENS':>6}")
    for row in rows:
        print(f"{row.name:<20} {row.namespace:<28} {row.networks:>4}/{row.max_networks:<4} "
              f"{row.nodes:>4}/{row.max_nodes:<4} {row.tokens:>6}")  # fmt: skip
    return 0


async def _update(args: argparse.Namespace, settings: Settings) -> int:
    async with _database(settings) as sessions:
        async with write_session(sessions) as session:
            tenant = await update_limits(session, args.name, max_networks=args.max_networks,
                                         max_nodes=args.max_nodes)  # fmt: skip
        if args.manifests:
            _print_manifests(tenant, settings)
            return 0
        async with _admin(args, settings) as cluster:
            await provision(cluster, tenant, settings)  # the quota follows the new limits
    print(f"tenant {tenant.name}: {_limits(tenant.max_networks, tenant.max_nodes)}")
    return 0


async def _delete(args: argparse.Namespace, settings: Settings) -> int:
    own = settings.namespace or "default"
    async with _database(settings) as sessions:
        async with write_session(sessions) as session:
            tenant = await delete_tenant(session, args.name, force=args.force,
                                         keep_namespace=own)  # fmt: skip
        if tenant.namespace == own:
            print(f"tenant {tenant.name} deleted (namespace {own} is QaaS's own: kept)")
            return 0
        if args.keep_namespace:
            print(f"tenant {tenant.name} deleted with its tokens; delete its namespace with "
                  f"`kubectl delete namespace {tenant.namespace}`")  # fmt: skip
            return 0
        async with _admin(args, settings) as cluster:
            deleting = await cluster.delete_namespace(tenant.namespace)
    print(f"tenant {tenant.name} deleted with its tokens; namespace {tenant.namespace} "
          f"{'is being deleted' if deleting else 'was not there'}")  # fmt: skip
    return 0


def run_action(args: argparse.Namespace) -> int:
    """Run a tenant or token command's ``action`` (set by its parser); its failures are one
    line on stderr: 2 for a request that cannot be done, 1 for a cluster that refused."""
    settings = load_settings()
    try:
        code: int = asyncio.run(args.action(args, settings))
        return code
    except TenancyError as error:
        print(f"qaas: {error}", file=sys.stderr)
        return 2
    except KubeError as error:
        print(f"qaas: the cluster refused ({error}); provisioning needs an administrator's "
              "kubeconfig (--kubeconfig or QAAS_ADMIN_KUBECONFIG)", file=sys.stderr)  # fmt: skip
        return 1


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-networks", type=int, metavar="N")
    parser.add_argument("--max-nodes", type=int, metavar="N")


def _kubeconfig_option(parser: argparse.ArgumentParser, manifests: bool = True) -> None:
    parser.add_argument("--kubeconfig", metavar="ADMIN_KUBECONFIG",
                        help="an administrator's kubeconfig (default: QAAS_ADMIN_KUBECONFIG, "
                             "else the usual cluster discovery)")  # fmt: skip
    if manifests:
        parser.add_argument("--manifests", action="store_true",
                            help="touch no cluster: print the tenant's namespace, RoleBinding, "
                                 "quota and NetworkPolicy for `kubectl apply -f -`")  # fmt: skip


def add_tenant_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = commands.add_parser("tenant", help="create, list, update and delete tenants")
    actions = tenant.add_subparsers(dest="tenant_command", required=True)
    create = actions.add_parser(
        "create", help="a tenant, and its namespace, RoleBinding, quota and NetworkPolicy"
    )
    create.add_argument("name")
    _limit_options(create)
    _kubeconfig_option(create)
    create.set_defaults(handler=run_action, action=_create)
    listing = actions.add_parser("list", help="tenants with their limits, usage and tokens")
    listing.set_defaults(handler=run_action, action=_list)
    update = actions.add_parser("update", help="change a tenant's limits (and its quota)")
    update.add_argument("name")
    _limit_options(update)
    _kubeconfig_option(update)
    update.set_defaults(handler=run_action, action=_update)
    delete = actions.add_parser("delete", help="delete a tenant, its tokens and its namespace")
    delete.add_argument("name")
    delete.add_argument("--force", action="store_true",
                        help="also when it has networks: they go with its namespace")  # fmt: skip
    delete.add_argument("--keep-namespace", action="store_true",
                        help="delete the rows only; the namespace is yours to delete")  # fmt: skip
    _kubeconfig_option(delete, manifests=False)
    delete.set_defaults(handler=run_action, action=_delete)
