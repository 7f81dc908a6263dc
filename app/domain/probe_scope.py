"""Which addresses the chain probe may dial: the rule that keeps it off the public internet.

The probe dials pod IPs that the cluster reports (``status.podIP``). It dials an address only
if the address lies inside one of the configured ranges (``QAAS_CHAIN_PROBE_NETWORKS``), and a
range may be configured only if it is private address space: RFC 1918 (10/8, 172.16/12,
192.168/16), RFC 6598 shared space (100.64/10, used by some CNIs), IPv6 unique local (fc00::/7),
or loopback (for tests and benchmarks on one machine). Public, link-local (169.254/16: cloud
metadata), multicast and unspecified addresses can therefore never be dialled, whatever a pod
status says. Why not "refuse what the default route would carry": in a real cluster many CNIs
(Calico, for one) reach every other pod through the pod's default route, so that rule would
refuse them all; a range rule means the same everywhere and can be checked without the host.

Example::

    >>> scope = probe_networks("10.0.0.0/8")
    >>> may_dial("10.244.1.7", scope), may_dial("8.8.8.8", scope), may_dial("10.0.0.1:1", scope)
    (True, False, False)
    >>> probe_networks("8.8.8.0/24")
    Traceback (most recent call last):
    ...
    ValueError: 8.8.8.0/24 is not private address space: the probe dials pods only
"""

from __future__ import annotations

import ipaddress

from app.domain.addresses import AddressRange, address_ranges

Network = AddressRange

PRIVATE = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "127.0.0.0/8",
        "::1/128",
    )
)


def probe_networks(text: str) -> tuple[Network, ...]:
    """Parse comma-separated CIDRs; ValueError names one that is malformed or not private."""
    found = address_ranges(text)
    for network in found:
        if not any(
            network.version == private.version and network.subnet_of(private)  # type: ignore[arg-type]
            for private in PRIVATE
        ):
            raise ValueError(f"{network} is not private address space: the probe dials pods only")
    if not found:
        raise ValueError("no range given: the probe would dial nothing")
    return found


def may_dial(address: str, networks: tuple[Network, ...]) -> bool:
    """True if ``address`` (a bare IP) lies inside one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)
