"""Naming rules: what names networks, nodes, tenants and namespaces may have."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.domain.names import (
    COORDINATOR_NAME,
    DEFAULT_JOIN_NODE_NAME,
    combined_name_problem,
    name_problem,
    namespace_problem,
    network_name_problem,
    node_name_problem,
    object_name,
    tenant_name_problem,
    tenant_namespace,
    tidy,
)

NOT_A_LABEL = (
    'must be a lowercase RFC 1035 label: a-z, 0-9 and "-", starting with a letter '
    'and not ending with "-"'
)
NOT_A_NAMESPACE = "is not a valid namespace name"


def too_long(limit: int, got: int) -> str:
    return f"must be at most {limit} characters (got {got})"


# -- name_problem ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "acme", "peer-1", "a1", "a-b-c", "a--b", "coordinator", "x" * 63]
)
def test_a_lowercase_rfc_1035_label_is_a_name(name: str) -> None:
    assert name_problem(name) is None


def test_an_empty_name_is_refused() -> None:
    assert name_problem("") == "must not be empty"


def test_a_name_may_be_63_characters() -> None:
    assert name_problem("a" * 63) is None


def test_a_name_of_64_characters_is_refused_with_its_length() -> None:
    assert name_problem("a" * 64) == too_long(63, 64)


def test_a_name_is_held_to_the_limit_it_is_given() -> None:
    assert name_problem("abc", limit=3) is None
    assert name_problem("abcd", limit=3) == too_long(3, 4)


def test_the_length_is_checked_before_the_characters() -> None:
    assert name_problem("A" * 70) == too_long(63, 70)


@pytest.mark.parametrize(
    "name",
    [
        "Acme",  # uppercase
        "ACME",
        "peeR",
        "1peer",  # leading digit
        "0",
        "-peer",  # leading dash
        "peer-",  # trailing dash
        "-",
        "peer_1",
        "peer.1",
        "peer 1",
        " peer",  # not tidied
        "peer\t",
        "pèer",  # unicode
        "ñ",
        "пир",
        "peer-\u0661",  # an Arabic-Indic digit
        "peer🚀",
        "\uff50\uff45\uff45\uff52",  # fullwidth letters
    ],
)
def test_a_name_that_is_not_a_lowercase_rfc_1035_label_is_refused(name: str) -> None:
    assert name_problem(name) == NOT_A_LABEL


def test_a_unicode_name_is_measured_in_characters() -> None:
    assert name_problem("é" * 64) == too_long(63, 64)
    assert name_problem("é" * 63) == NOT_A_LABEL


@pytest.mark.parametrize("check", [name_problem, namespace_problem])
def test_a_name_with_a_trailing_newline_is_refused(check: Callable[[str], str | None]) -> None:
    assert check("peer\n") is not None


# -- combined_name_problem -------------------------------------------------------------------


def test_the_object_name_joins_network_and_node_with_a_dash() -> None:
    assert object_name("acme", "peer-1") == "acme-peer-1"


def test_a_combined_name_may_be_63_characters() -> None:
    assert combined_name_problem("n" * 31, "p" * 31) is None


def test_a_combined_name_of_64_characters_is_refused_and_shown() -> None:
    network, node = "n" * 32, "p" * 31
    assert combined_name_problem(network, node) == (
        f'together with the network name the object name "{network}-{node}" would be '
        "64 characters; the limit is 63"
    )


# -- network_name_problem --------------------------------------------------------------------


def test_a_joined_network_name_may_be_61_characters() -> None:
    assert network_name_problem("a" * 61, joined=True) is None


def test_a_joined_network_name_of_62_characters_is_refused() -> None:
    assert network_name_problem("a" * 62, joined=True) == too_long(61, 62)


def test_a_joined_network_name_leaves_room_for_a_one_letter_node() -> None:
    network = "a" * 61
    assert network_name_problem(network, joined=True) is None
    assert node_name_problem(network, "b") is None


def test_a_created_network_name_may_be_51_characters() -> None:
    # "<name>-coordinator" must fit in 63 and "-coordinator" is 12 characters: 63 - 12 = 51.
    assert network_name_problem("a" * 51, joined=False) is None
    assert len(object_name("a" * 51, COORDINATOR_NAME)) == 63


def test_a_created_network_name_of_52_characters_is_refused() -> None:
    assert len(object_name("a" * 52, COORDINATOR_NAME)) == 64
    assert network_name_problem("a" * 52, joined=False) == too_long(51, 52)


@pytest.mark.parametrize("length", range(1, 71))
def test_a_created_network_is_accepted_exactly_when_its_coordinator_can_be_named(
    length: int,
) -> None:
    network = "a" * length
    accepted = network_name_problem(network, joined=False) is None
    assert accepted == (len(object_name(network, COORDINATOR_NAME)) <= 63)
    if accepted:
        assert node_name_problem(network, COORDINATOR_NAME) is None


@pytest.mark.parametrize("joined", [True, False])
@pytest.mark.parametrize("name", ["Acme", "1acme", "acme-", "", "acmé"])
def test_a_network_name_must_be_a_name(name: str, joined: bool) -> None:
    assert network_name_problem(name, joined=joined) == name_problem(name)
    assert network_name_problem(name, joined=joined) is not None


# -- node_name_problem -----------------------------------------------------------------------


@pytest.mark.parametrize("node", ["peer-1", COORDINATOR_NAME, DEFAULT_JOIN_NODE_NAME, "a"])
def test_an_ordinary_node_name_is_accepted(node: str) -> None:
    assert node_name_problem("acme", node) is None


@pytest.mark.parametrize("node", ["Peer", "1peer", "peer-", "-peer", "pëer", "peer_1"])
def test_a_node_name_must_be_a_label(node: str) -> None:
    assert node_name_problem("acme", node) == NOT_A_LABEL


def test_an_empty_node_name_is_refused() -> None:
    assert node_name_problem("acme", "") == "must not be empty"


def test_a_node_name_may_be_61_characters_beside_a_one_letter_network() -> None:
    assert node_name_problem("a", "b" * 61) is None


def test_a_node_name_of_62_characters_is_refused_for_itself() -> None:
    assert node_name_problem("a", "b" * 62) == too_long(61, 62)


def test_a_node_name_that_fits_alone_is_refused_if_the_object_name_would_not() -> None:
    network, node = "n" * 40, "p" * 23
    assert name_problem(node) is None
    assert node_name_problem(network, node) == combined_name_problem(network, node)
    assert node_name_problem(network, node) is not None
    assert node_name_problem(network, "p" * 22) is None


# -- tenant_name_problem and tenant_namespace -------------------------------------------------


def test_a_tenant_name_leaves_room_for_the_namespace_prefix() -> None:
    assert tenant_name_problem("a" * 58, "qaas-") is None
    assert tenant_name_problem("a" * 59, "qaas-") == too_long(58, 59)


def test_without_a_prefix_a_tenant_name_may_be_63_characters() -> None:
    assert tenant_name_problem("a" * 63, "") is None
    assert tenant_name_problem("a" * 64, "") == too_long(63, 64)


@pytest.mark.parametrize("name", ["Acme", "1acme", "acme-", "acmé", "ac me"])
def test_a_tenant_name_must_be_a_label(name: str) -> None:
    assert tenant_name_problem(name, "qaas-") == NOT_A_LABEL


def test_an_empty_tenant_name_is_refused() -> None:
    assert tenant_name_problem("", "qaas-") == "must not be empty"


def test_a_tenant_namespace_is_the_prefix_and_the_tenant() -> None:
    assert tenant_namespace("acme", "qaas-") == "qaas-acme"
    assert tenant_namespace("acme", "") == "acme"


def test_a_tenant_namespace_is_cut_to_63_characters() -> None:
    namespace = tenant_namespace("a" * 70, "qaas-")
    assert namespace == "qaas-" + "a" * 58
    assert len(namespace) == 63


def test_a_tenant_namespace_cut_after_a_dash_does_not_end_with_it() -> None:
    # The 63rd character is a "-": the cut name would end with it.
    namespace = tenant_namespace("a" * 57 + "-bcd", "qaas-")
    assert namespace == "qaas-" + "a" * 57
    assert namespace_problem(namespace) is None


def test_a_tenant_namespace_cut_after_several_dashes_drops_them_all() -> None:
    namespace = tenant_namespace("a" * 56 + "--bcd", "qaas-")
    assert namespace == "qaas-" + "a" * 56


@pytest.mark.parametrize("length", [1, 30, 58])
@pytest.mark.parametrize("prefix", ["qaas-", "", "t"])
def test_an_accepted_tenant_name_makes_a_valid_namespace_that_keeps_it_whole(
    prefix: str, length: int
) -> None:
    tenant = "a" * (length - 1) + "z"
    assert tenant_name_problem(tenant, prefix) is None
    namespace = tenant_namespace(tenant, prefix)
    assert namespace == prefix + tenant
    assert namespace_problem(namespace) is None


# -- namespace_problem -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace", ["default", "qaas-acme", "a", "0", "1abc", "123", "a-1", "a--b", "a" * 63]
)
def test_an_rfc_1123_label_is_a_namespace_even_with_a_leading_digit(namespace: str) -> None:
    assert namespace_problem(namespace) is None


@pytest.mark.parametrize(
    "namespace",
    [
        "",
        "a" * 64,
        "Default",
        "QAAS",
        "-ns",
        "ns-",
        "-",
        "ns_1",
        "ns.1",
        "ns 1",
        " ns",
        "nś",
        "ns🚀",
    ],
)
def test_a_namespace_that_is_not_an_rfc_1123_label_is_refused(namespace: str) -> None:
    assert namespace_problem(namespace) == NOT_A_NAMESPACE


# -- tidy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("acme", "acme"),
        ("  acme  ", "acme"),
        ("\tpeer-1\n", "peer-1"),
        ("\r\n acme \r\n", "acme"),
        ("\u00a0acme\u3000", "acme"),  # unicode white space too
        ("a b", "a b"),  # inner white space is kept (and then refused)
        ("", ""),
        ("   ", ""),
    ],
)
def test_tidy_drops_surrounding_white_space_only(typed: str, stored: str) -> None:
    assert tidy(typed) == stored


def test_a_name_typed_with_white_space_is_accepted_once_tidied() -> None:
    assert name_problem(" acme\n") is not None
    assert name_problem(tidy(" acme\n")) is None


def test_a_name_of_white_space_alone_is_empty_once_tidied() -> None:
    assert name_problem(tidy("  \t ")) == "must not be empty"
