"""A node's storage: the size of its claim (a Kubernetes quantity) and its StorageClass.

Each node keeps QNM's ``Blockchain/`` and ``Constellation/`` (keys, enode, chain) on a
PersistentVolumeClaim of its own; a network says how large and of which class (``networkCreate``'s
``storage``, defaults from ``QAAS_NODE_STORAGE_SIZE`` / ``QAAS_NODE_STORAGE_CLASS``). These
functions are the one home of the rules, so the API and the settings refuse the same values.

Example::

    >>> quantity_bytes("1Gi"), quantity_bytes("500M"), quantity_bytes("1.5Ki")
    (1073741824, 500000000, 1536)
    >>> size_problem("1Gi", max_size="100Gi") is None
    True
    >>> size_problem("1 GB", max_size="100Gi")
    'must be a Kubernetes quantity such as 1Gi, 500Mi or 10G (got "1 GB")'
    >>> size_problem("200Gi", max_size="100Gi")
    'must be at most 100Gi (got 200Gi)'
    >>> storage_class_problem("fast-ssd") is None
    True
    >>> storage_class_problem("Fast_SSD")[:38]
    'must be a DNS-1123 subdomain (lowercas'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# A quantity as a volume size is written: a positive number and an optional binary (Ki..Ei) or
# decimal (k..E) suffix. Kubernetes also accepts exponents (1e9) and milli (m); a size never
# needs them, so they are refused rather than guessed at.
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
# StorageClass names are DNS-1123 subdomains.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_CLASS_NAME = 253
# A claim smaller than this cannot hold a geth data directory; the API refuses it.
MIN_SIZE_BYTES = 2**20


@dataclass(frozen=True)
class Storage:
    """What a network's nodes' claims ask for: ``size`` and ``storage_class`` ("" = the
    cluster's default StorageClass)."""

    size: str
    storage_class: str = ""

    def problems(self, max_size: str) -> list[tuple[str, str]]:
        """(input field, problem) for each value that cannot be used."""
        found = []
        if problem := size_problem(self.size, max_size=max_size):
            found.append(("size", problem))
        if self.storage_class and (problem := storage_class_problem(self.storage_class)):
            found.append(("storageClass", problem))
        return found


def quantity_bytes(text: str) -> int | None:
    """The bytes ``text`` stands for, rounded up, or None if it is not a size we accept."""
    match = _QUANTITY.match(text)
    if not match:
        return None
    try:
        value = Decimal(match.group(1)) * _FACTORS[match.group(2)]
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        return None
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def size_problem(size: str, *, max_size: str) -> str | None:
    """Why ``size`` is not a usable claim size (at least 1Mi, at most ``max_size``), or None."""
    amount = quantity_bytes(size)
    if amount is None:
        return f'must be a Kubernetes quantity such as 1Gi, 500Mi or 10G (got "{size}")'
    if amount < MIN_SIZE_BYTES:
        return f"must be at least 1Mi (got {size})"
    limit = quantity_bytes(max_size)
    if limit is not None and amount > limit:
        return f"must be at most {max_size} (got {size})"
    return None


def storage_class_problem(name: str) -> str | None:
    """Why ``name`` is not a StorageClass name, or None. Empty means the cluster's default
    class and is checked by the caller, not here."""
    if len(name) > MAX_CLASS_NAME:
        return f"must be at most {MAX_CLASS_NAME} characters (got {len(name)})"
    if not _SUBDOMAIN.match(name):
        return (
            "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting "
            f'and ending with a letter or digit; got "{name}")'
        )
    return None
