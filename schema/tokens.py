"""Tenants and tokens over GraphQL: who am I (`viewer`), and, for ADMIN tokens, managing tokens.

The first ADMIN token comes from `qaas token create` (or the embedded default's bootstrap); the
rest can be made here. A new token's secret is in the payload of `tokenCreate` and nowhere else,
ever again.
"""

from __future__ import annotations

import datetime

import strawberry
from strawberry.types import Info

from app.domain.enums import Role
from app.domain.errors import ErrorCode
from app.services.tenancy import revoke_token, token_for_tenant, token_request_errors
from app.store import reads
from app.store.models import ApiToken as TokenRow
from schema.auth import Need, caller
from schema.context import Context
from schema.errors import ClientError
from schema.ids import raw_id_of, to_global_id
from schema.pagination import PageInfo, page_args
from schema.types import UserError

RoleEnum = strawberry.enum(Role, name="Role")


@strawberry.type(description="An organisation; its networks run in its own namespace.")
class Tenant:
    name: str
    namespace: str
    max_networks: int
    max_nodes: int


@strawberry.type(description="An API token, without its secret.")
class ApiToken:
    id: strawberry.ID
    name: str
    role: RoleEnum  # type: ignore[valid-type]
    hint: str = strawberry.field(description="The token's first characters, to recognise it.")
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None
    last_used_at: datetime.datetime | None = strawberry.field(
        description="When it last authenticated, to within QAAS_TOKEN_TOUCH_SECONDS (60 s); "
        "null: never."
    )

    @classmethod
    def of(cls, row: TokenRow) -> ApiToken:
        return cls(
            id=strawberry.ID(to_global_id("ApiToken", row.id)), name=row.name, role=row.role,
            hint=row.hint + "...", created_at=row.created_at, expires_at=row.expires_at,
            revoked_at=row.revoked_at, last_used_at=row.last_used_at,
        )  # fmt: skip


@strawberry.type(description="Who the caller is.")
class Viewer:
    tenant: Tenant
    role: RoleEnum  # type: ignore[valid-type]


@strawberry.type
class ApiTokenEdge:
    cursor: str
    node: ApiToken


@strawberry.type
class ApiTokenConnection:
    edges: list[ApiTokenEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class TokenCreateInput:
    name: str
    role: RoleEnum = Role.MEMBER  # type: ignore[valid-type]
    expires_in_days: int | None = strawberry.field(default=None, description="None: never.")


@strawberry.input
class TokenRevokeInput:
    id: strawberry.ID


@strawberry.type
class TokenCreatePayload:
    token: ApiToken | None
    secret: str | None = strawberry.field(description="The token itself. Shown only here, once.")
    user_errors: list[UserError]


@strawberry.type
class TokenRevokePayload:
    token: ApiToken | None
    user_errors: list[UserError]


@strawberry.type
class TokenQuery:
    @strawberry.field(description="The caller: its tenant and role.")
    async def viewer(self, info: Info[Context, None]) -> Viewer:
        principal = caller(info)
        async with info.context.deps.sessions() as session:
            tenant = await reads.tenant(session, principal.tenant_id)
        assert tenant is not None
        return Viewer(
            tenant=Tenant(name=tenant.name, namespace=tenant.namespace,
                          max_networks=tenant.max_networks, max_nodes=tenant.max_nodes),
            role=principal.role,
        )  # fmt: skip

    @strawberry.field(description="The tenant's API tokens (ADMIN only), oldest first.")
    async def tokens(
        self, info: Info[Context, None], first: int = 20, after: str | None = None
    ) -> ApiTokenConnection:
        principal = caller(info, Need.ADMIN_READ)
        limit = page_args(first)
        try:
            async with info.context.deps.sessions() as session:
                page = await reads.tokens_page(session, principal.tenant_id, limit, after)
        except reads.BadCursor as error:
            raise ClientError(str(error)) from None
        pairs = zip(page.items, page.cursors, strict=True)
        return ApiTokenConnection(
            edges=[ApiTokenEdge(cursor=c, node=ApiToken.of(t)) for t, c in pairs],
            page_info=PageInfo(has_next_page=page.has_next, has_previous_page=after is not None,
                               start_cursor=page.cursors[0] if page.cursors else None,
                               end_cursor=page.end_cursor),
            total_count=page.total,
        )  # fmt: skip


@strawberry.type
class TokenMutation:
    @strawberry.mutation(description="Create an API token for the caller's tenant (ADMIN only).")
    async def token_create(
        self, info: Info[Context, None], input: TokenCreateInput
    ) -> TokenCreatePayload:
        principal = caller(info, Need.ADMIN)
        errors = token_request_errors(input.name, input.expires_in_days)
        if errors:
            return TokenCreatePayload(
                token=None, secret=None, user_errors=UserError.list_of(errors)
            )
        async with info.context.deps.unit_of_work() as work:
            row, secret = await token_for_tenant(
                work.session, principal.tenant_id, input.role, input.name, input.expires_in_days
            )
        return TokenCreatePayload(token=ApiToken.of(row), secret=secret, user_errors=[])

    @strawberry.mutation(description="Revoke an API token of the caller's tenant (ADMIN only).")
    async def token_revoke(
        self, info: Info[Context, None], input: TokenRevokeInput
    ) -> TokenRevokePayload:
        principal = caller(info, Need.ADMIN)
        raw = raw_id_of(input.id, "ApiToken")
        async with info.context.deps.unit_of_work() as work:
            row = await revoke_token(work.session, raw, principal.tenant_id) if raw else None
        if row is None:
            error = UserError(field=["input", "id"], message="no such token",
                              code=ErrorCode.NOT_FOUND)  # fmt: skip
            return TokenRevokePayload(token=None, user_errors=[error])
        # Committed: its open WebSockets here end now, before the answer, and its next request
        # is refused; other replicas hear of it on the bus (PostgreSQL).
        info.context.deps.token_ended(row.id)
        return TokenRevokePayload(token=ApiToken.of(row), user_errors=[])
