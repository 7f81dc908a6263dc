"""The address a node advertises must be an IPv4 address another machine can dial."""

from __future__ import annotations

import pytest

from app.domain.addresses import dialable_ip_problem


@pytest.mark.parametrize(
    "address",
    ["10.96.0.20", "10.0.0.1", "172.16.0.5", "172.31.255.254", "192.168.1.10"],
)
def test_an_ordinary_private_ipv4_address_is_dialable(address: str) -> None:
    assert dialable_ip_problem(address) is None


@pytest.mark.parametrize("address", ["::1", "fd00::20", "2001:db8::1", "::ffff:10.0.0.1", "::"])
def test_an_ipv6_address_is_refused_because_qnm_advertises_ipv4_only(address: str) -> None:
    assert dialable_ip_problem(address) == "QNM advertises IPv4 addresses only"


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",  # the seed's value: peers would dial nowhere
        "127.0.0.1",
        "127.1.2.3",  # all of 127/8 is loopback
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",  # reserved (240.0.0.0/4)
        "255.255.255.255",  # broadcast
    ],
)
def test_an_address_peers_cannot_dial_is_refused(address: str) -> None:
    assert dialable_ip_problem(address) == (
        f"{address} cannot be dialled by peers: give the coordinator's reachable address"
    )


@pytest.mark.parametrize(
    "value",
    [
        "quorum.example",
        "localhost",
        "",
        "garbage",
        "10.0.0",
        "10.0.0.256",
        "010.0.0.1",  # leading zeros are ambiguous (octal?) and refused
        "10.0.0.1/24",
        "10.0.0.1:30303",
        " 10.0.0.1",  # untidied input is not silently accepted here
        "\uff11\uff10.0.0.1",  # fullwidth digits
    ],
)
def test_something_that_is_not_an_ip_address_is_refused_and_quoted(value: str) -> None:
    assert dialable_ip_problem(value) == f'"{value}" is not an IP address'
