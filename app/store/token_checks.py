"""Token rows read and written outside a request: the state of open WebSockets' tokens, and
when a token was last used.

Example::

    states = await token_states(session, ["id-1", "id-2"])   # {"id-1": (revoked_at, expires_at)}
    await mark_used(session, {"id-1": utcnow()})
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import ApiToken

# Bound parameters per statement, well under SQLite's and asyncpg's limits.
CHUNK = 500

TokenState = tuple[datetime.datetime | None, datetime.datetime | None]  # revoked_at, expires_at


async def token_states(session: AsyncSession, token_ids: Collection[str]) -> dict[str, TokenState]:
    """``revoked_at`` and ``expires_at`` of each token that still exists (a deleted tenant's are
    missing): one query per 500 tokens."""
    ids = sorted(token_ids)
    found: dict[str, TokenState] = {}
    for start in range(0, len(ids), CHUNK):
        rows = await session.execute(
            select(ApiToken.id, ApiToken.revoked_at, ApiToken.expires_at).where(
                ApiToken.id.in_(ids[start : start + CHUNK])
            )
        )
        found.update({row.id: (row.revoked_at, row.expires_at) for row in rows})
    return found


async def mark_used(session: AsyncSession, used: Mapping[str, datetime.datetime]) -> None:
    """Set ``last_used_at`` of each token (a token that is gone is skipped)."""
    for token_id, when in used.items():
        await session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        )
