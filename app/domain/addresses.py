"""Addresses a Quorum node may advertise or dial.

QNM puts the address into the node's enode and constellation URL, and peers dial it: it must be
an IPv4 address (that Quorum build predates hostnames and IPv6 in enodes) that another machine can
reach, so not 0.0.0.0, not loopback, not multicast and not the reserved 240.0.0.0/4 (with the
broadcast address). The API (``networkJoin``) and ``qaas
render`` (``--coordinator-ip``, ``--service-ip``) both ask ``dialable_ip_problem``.

``networkJoin`` also refuses a coordinator inside the cluster's own Service or pod ranges
(``QAAS_CLUSTER_CIDRS``): a peer pointed there would dial another tenant's coordinator in the
same cluster. ``cluster_address_problem`` says so, unless the administrator allowed it.

Example::

    >>> dialable_ip_problem("10.96.0.20") is None
    True
    >>> print(dialable_ip_problem("224.0.0.1"))
    224.0.0.1 cannot be dialled by peers: give the coordinator's reachable address
    >>> dialable_ip_problem("quorum.example")
    '"quorum.example" is not an IP address'
    >>> ranges = address_ranges("10.96.0.0/12, 10.244.0.0/16")
    >>> print(cluster_address_problem("10.244.3.9", ranges))
    10.244.3.9 is in the cluster's own range 10.244.0.0/16: give an address outside the cluster
    >>> cluster_address_problem("10.1.2.3", ranges) is None
    True
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

AddressRange = ipaddress.IPv4Network | ipaddress.IPv6Network


def dialable_ip_problem(value: str) -> str | None:
    """Why peers could not dial ``value`` as a node's address, or None if they could."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return f'"{value}" is not an IP address'
    if address.version != 4:
        return "QNM advertises IPv4 addresses only"
    if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_reserved:
        return f"{value} cannot be dialled by peers: give the coordinator's reachable address"
    return None


def address_ranges(text: str) -> tuple[AddressRange, ...]:
    """Parse comma-separated CIDRs (``10.96.0.0/12,10.244.0.0/16``; host bits are dropped);
    ValueError names a bad one."""
    found: list[AddressRange] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f'"{part}" is not a CIDR such as 10.96.0.0/12') from None
    return tuple(found)


def cluster_address_problem(value: str, ranges: Sequence[AddressRange]) -> str | None:
    """Why ``value`` may not be a joined network's coordinator: it lies in one of ``ranges``
    (the cluster's own Service and pod ranges); None when it does not (or is not an IP)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    for cidr in ranges:
        if address.version == cidr.version and address in cidr:
            return (
                f"{value} is in the cluster's own range {cidr}: give an address outside the cluster"
            )
    return None
