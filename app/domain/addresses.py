"""Addresses a Quorum node may advertise or dial.

QNM puts the address into the node's enode and constellation URL, and peers dial it: it must be
an IPv4 address (that Quorum build predates hostnames and IPv6 in enodes) that another machine can
reach, so not 0.0.0.0, not loopback, not multicast and not the reserved 240.0.0.0/4 (with the
broadcast address). The API (``networkJoin``) and ``qaas
render`` (``--coordinator-ip``, ``--service-ip``) both ask ``dialable_ip_problem``.

Example::

    >>> dialable_ip_problem("10.96.0.20") is None
    True
    >>> print(dialable_ip_problem("224.0.0.1"))
    224.0.0.1 cannot be dialled by peers: give the coordinator's reachable address
    >>> dialable_ip_problem("quorum.example")
    '"quorum.example" is not an IP address'
"""

from __future__ import annotations

import ipaddress


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
