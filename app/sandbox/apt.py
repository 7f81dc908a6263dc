"""A private apt: Debian's packages and sources fetched without touching the system's apt state.

The sandbox is built from Debian's own `kubernetes` source package with Debian's Go toolchain.
Both come from the Debian mirrors this machine is already configured for; we derive the entries
(adding `deb-src`) from the system's apt configuration instead of writing a host name anywhere,
and keep lists, caches and unpacked packages in a folder of our own.

Example::

    apt = PrivateApt(Path("/tmp/work/apt"))
    apt.update()
    apt.download(["golang-1.19-go"], into=Path("/tmp/work/debs"))
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")
OS_RELEASE = Path("/etc/os-release")


class AptError(RuntimeError):
    """apt could not do what the build needs; the message says what and why."""


@dataclass(frozen=True)
class AptSource:
    """One Debian archive entry: where it is, which suite, which components, its keyring."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str | None = None

    def deb822(self) -> str:
        lines = [
            "Types: deb deb-src",
            f"URIs: {self.uri}",
            f"Suites: {self.suite}",
            f"Components: {' '.join(self.components)}",
        ]
        if self.signed_by:
            lines.append(f"Signed-By: {self.signed_by}")
        return "\n".join(lines) + "\n"


def os_codename(os_release: Path = OS_RELEASE) -> str:
    """The Debian codename of this machine, e.g. ``bookworm``."""
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    raise AptError(f"{os_release} names no VERSION_CODENAME: is this a Debian machine?")


def _parse_deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current = {}
            continue
        key, sep, value = raw.partition(":")
        if sep and not raw[0].isspace():
            current[key.strip().lower()] = value.strip()
    return stanzas


_ONE_LINE = re.compile(
    r"^deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s+(?P<comps>.+)$"
)


def system_sources(
    codename: str,
    sources_dir: Path = APT_SOURCES_DIR,
    sources_list: Path = APT_SOURCES_LIST,
) -> list[AptSource]:
    """The system's binary Debian entries for ``codename`` (and its -updates/-security suites).

    Third-party repositories are left out: they carry no Debian source packages, and a broken
    one must not break our build.
    """
    found: list[AptSource] = []

    def wanted(suite: str) -> bool:
        return suite == codename or suite.startswith(codename + "-")

    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for stanza in _parse_deb822(path.read_text()):
            if "deb" not in stanza.get("types", "").split():
                continue
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            for uri in stanza.get("uris", "").split():
                for suite in stanza.get("suites", "").split():
                    if wanted(suite):
                        comps = tuple(stanza.get("components", "main").split())
                        found.append(AptSource(uri, suite, comps, stanza.get("signed-by")))
    if sources_list.is_file():
        for line in sources_list.read_text().splitlines():
            match = _ONE_LINE.match(line.strip())
            if match and wanted(match["suite"]):
                opts = dict(
                    opt.split("=", 1) for opt in (match["opts"] or "").split() if "=" in opt
                )
                comps = tuple(match["comps"].split())
                found.append(AptSource(match["uri"], match["suite"], comps, opts.get("signed-by")))
    if not found:
        raise AptError(
            f"no Debian '{codename}' entry in {sources_dir} or {sources_list}: "
            "the sandbox is built from Debian's packages and needs a configured Debian mirror"
        )
    return found


class PrivateApt:
    """apt-get and apt-cache pointed at a folder of our own (lists, cache, sources)."""

    def __init__(self, root: Path, sources: list[AptSource] | None = None) -> None:
        self.root = root
        self.sources = sources if sources is not None else system_sources(os_codename())
        for sub in ("lists/partial", "cache/archives/partial", "sources.d", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "sources.d" / "qaas.sources").write_text(
            "\n".join(source.deb822() for source in self.sources)
        )

    def _options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", "Dir::State::status=/var/lib/dpkg/status",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.d'}",
            # Root downloads into our folder, which the _apt user cannot write: say so up front.
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def _run(self, args: list[str], cwd: Path | None = None) -> str:
        command = [args[0], *self._options(), *args[1:]]
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise AptError(f"`{' '.join(args)}` failed: {' / '.join(tail)}")
        return result.stdout

    def update(self) -> None:
        self._run(["apt-get", "-q", "update"])

    def source_version(self, package: str) -> str:
        """The version of source package ``package`` the configured mirrors offer."""
        for line in self._run(["apt-cache", "showsrc", package]).splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
        raise AptError(f"the configured Debian mirrors have no source package '{package}'")

    def download_source(self, package: str, into: Path) -> Path:
        """Download (not unpack) a source package; returns its .dsc file."""
        into.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", "-q", "source", "--download-only", package], cwd=into)
        dscs = sorted(into.glob(f"{package}_*.dsc"))
        if not dscs:
            raise AptError(f"apt-get source {package} left no .dsc in {into}")
        return dscs[-1]

    def download(self, packages: list[str], into: Path) -> list[Path]:
        """Download binary packages (no dependencies resolved, nothing installed)."""
        into.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", "-q", "download", *packages], cwd=into)
        return sorted(into.glob("*.deb"))


def unpack_debs(debs: list[Path], root: Path) -> None:
    """Unpack .deb files into ``root`` without installing them (dpkg -x)."""
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
