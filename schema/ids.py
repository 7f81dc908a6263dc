"""Global object IDs: ``base64("Type:uuid")``, opaque to clients, as Relay expects.

Example::

    >>> to_global_id("Network", "3f1c")
    'TmV0d29yazozZjFj'
    >>> from_global_id("TmV0d29yazozZjFj")
    ('Network', '3f1c')
"""

from __future__ import annotations

import base64
import binascii


def to_global_id(type_name: str, raw_id: str) -> str:
    return base64.b64encode(f"{type_name}:{raw_id}".encode()).decode()


def from_global_id(global_id: str) -> tuple[str, str] | None:
    """(type, id), or None if ``global_id`` is not one of ours."""
    try:
        decoded = base64.b64decode(global_id.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, sep, raw_id = decoded.partition(":")
    return (type_name, raw_id) if sep and type_name and raw_id else None


def raw_id_of(global_id: str, expected: str) -> str | None:
    """The raw id if ``global_id`` names an object of type ``expected``, else None."""
    parsed = from_global_id(global_id)
    return parsed[1] if parsed and parsed[0] == expected else None
