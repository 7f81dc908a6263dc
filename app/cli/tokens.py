"""`qaas token create|list|revoke`: the first ADMIN token of a tenant, and token chores.

qaas token create --tenant acme --role admin      # the token alone is the last line;
                                                  # an unknown tenant is refused unless
                                                  # --create-tenant (`qaas tenant create`)
qaas token list --tenant acme
qaas token revoke TOKEN_ID
"""

from __future__ import annotations

import argparse
import datetime
import sys

from app.cli.tenants import run_action
from app.config import Settings
from app.domain.enums import Role
from app.services.tenancy import create_token, revoke_token, tokens_of
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import prepare
from app.store.unit import write_session
from schema.ids import raw_id_of


async def _create(args: argparse.Namespace, settings: Settings) -> int:
    await prepare(settings.database_url)
    engine = make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    expires = datetime.timedelta(days=args.expires_in_days) if args.expires_in_days else None
    try:
        tenant, token, secret = await create_token(
            make_sessionmaker(engine), args.tenant, Role(args.role.upper()), settings,
            args.name, expires, create_tenant=args.create_tenant,
        )  # fmt: skip
    finally:
        await engine.dispose()
    expiry = token.expires_at.isoformat() if token.expires_at else "never"
    print(f"tenant {tenant.name} (namespace {tenant.namespace}); token {token.id}, "
          f"role {token.role.value}, expires {expiry}. The token, shown only now:")  # fmt: skip
    print(secret)
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    await prepare(settings.database_url)
    engine = make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    try:
        async with make_sessionmaker(engine)() as session:
            for token, state in await tokens_of(session, args.tenant):
                used = token.last_used_at
                last = f"used {used:%Y-%m-%d %H:%M}Z" if used else "never used"
                print(f"{token.id}  {token.hint}...  {token.role.value:<6}  {state:<7}  "
                      f"{last:<22}  {token.name}")  # fmt: skip
    finally:
        await engine.dispose()
    return 0


async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    await prepare(settings.database_url)
    engine = make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    # The id `token list` prints, or the global ID GraphQL gives (`tokens { ... id }`).
    token_id = raw_id_of(args.token_id, "ApiToken") or args.token_id
    try:
        async with write_session(make_sessionmaker(engine)) as session:
            if await revoke_token(session, token_id) is None:
                print(f"qaas: no token with id {args.token_id}", file=sys.stderr)
                return 2
    finally:
        await engine.dispose()
    print(f"token {args.token_id} revoked")
    return 0


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="create, list and revoke API tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="a new token of an existing tenant")
    create.add_argument("--tenant", required=True)
    create.add_argument("--create-tenant", action="store_true",
                        help="create the tenant if it does not exist (its namespace is "
                             "provisioned as QAAS_TENANT_PROVISIONING says)")  # fmt: skip
    create.add_argument("--role", required=True, choices=["admin", "member", "viewer"])
    create.add_argument("--name", default="cli")
    create.add_argument("--expires-in-days", type=int, default=None)
    create.set_defaults(handler=run_action, action=_create)
    listing = actions.add_parser("list", help="a tenant's tokens (never their secrets)")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(handler=run_action, action=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", help="as `token list` prints it, or its GraphQL ID")
    revoke.set_defaults(handler=run_action, action=_revoke)
