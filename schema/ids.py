"""Global object IDs: ``base64("Type:uuid")``, opaque to clients, as Relay expects.

Example::

    >>> gid = to_global_id("Network", "0b5a6b3e-3c2f-4a8e-9d51-6f2c1e8f7a10")
    >>> from_global_id(gid)
    ('Network', '0b5a6b3e-3c2f-4a8e-9d51-6f2c1e8f7a10')
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid


@functools.lru_cache(maxsize=16384)  # a polled list gives the same nodes' ids each time
@functools.lru_cache(maxsize=16384)  # a polled list gives the same objects' ids each time
def to_global_id(type_name: str, raw_id: str) -> str:
    return base64.b64encode(f"{type_name}:{raw_id}".encode()).decode()


def from_global_id(global_id: str) -> tuple[str, str] | None:
    """(type, id), or None if ``global_id`` is not one of ours."""
    try:
        decoded = base64.b64decode(global_id.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, sep, raw_id = decoded.partition(":")
    if not (sep and type_name and _is_uuid(raw_id)):
        return None  # every object of ours has a UUID: anything else names nothing
    return type_name, raw_id


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def raw_id_of(global_id: str, expected: str) -> str | None:
    """The raw id if ``global_id`` names an object of type ``expected``, else None."""
    parsed = from_global_id(global_id)
    return parsed[1] if parsed and parsed[0] == expected else None
