"""Every example in the domain modules' docstrings runs, and says what the code does."""

from __future__ import annotations

import doctest
import importlib

import pytest

# (module, whether its docstrings carry examples): a module with examples must run at least one,
# so the test cannot pass by finding nothing.
MODULES = [
    pytest.param("app.domain.enums", False, id="enums"),
    pytest.param("app.domain.names", True, id="names"),
    pytest.param("app.domain.addresses", True, id="addresses"),
    pytest.param("app.domain.errors", True, id="errors"),
    pytest.param("app.domain.status", True, id="status"),
    pytest.param("app.domain.qnm", False, id="qnm"),
    pytest.param("app.domain.storage", True, id="storage"),
]


@pytest.mark.parametrize(("module_name", "has_examples"), MODULES)
def test_the_docstring_examples_of_a_domain_module_hold(
    capsys: pytest.CaptureFixture[str], module_name: str, has_examples: bool
) -> None:
    module = importlib.import_module(module_name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False)
    # testmod prints each failing example; the assertion shows them.
    assert failed == 0, capsys.readouterr().out
    if has_examples:
        assert attempted > 0, f"{module_name} ran no example"
