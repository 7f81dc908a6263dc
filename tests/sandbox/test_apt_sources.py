"""The private apt derives Debian's deb-src entries from the machine's own configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.sandbox.apt import AptError, AptSource, system_sources


def test_deb822_and_one_line_entries_for_our_codename_only(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://vendor.example/apt\n"
        "Suites: nodistro\n"
        "Components: main\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# comment\n"
        "deb [signed-by=/k.gpg] http://security.example/debian-security bookworm-security main\n"
        "deb http://old.example/debian bullseye main\n"
    )
    found = system_sources("bookworm", parts, one_line)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert found == [
        AptSource("http://mirror.example/debian", "bookworm", ("main",), keyring),
        AptSource("http://mirror.example/debian", "bookworm-updates", ("main",), keyring),
        AptSource(
            "http://security.example/debian-security", "bookworm-security", ("main",), "/k.gpg"
        ),
    ]
    assert found[0].deb822().startswith("Types: deb deb-src\n")


def test_no_debian_entry_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AptError, match="no Debian 'bookworm' entry"):
        system_sources("bookworm", tmp_path / "none", tmp_path / "none.list")
