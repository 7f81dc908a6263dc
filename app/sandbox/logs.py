"""Container logs: stdout/stderr of every process container, in files, capped, served to readers.

Each container has a folder ``<pod dir>/logs/<container>/`` with the current instance's log
``current.log`` and the one before it ``previous.log`` (what ``kubectl logs --previous`` shows).
Lines are stored as the CRI does, ``<RFC3339Nano time> <stream> <F|P> <text>``, so a reader can
ask for timestamps. A file that grows past half the cap is rotated once (``current.log.1``), so an
instance keeps at most ``cap`` bytes; reads cover both parts.

Readers in the same process may ``follow``: they get the lines written after the ones they read,
until the instance ends (a restart, a deletion), as ``kubectl logs -f`` does with a kubelet.

Example::

    log = ContainerLog(pod_dir / "logs" / "app")
    log.new_instance()
    log.write("stdout", b"hello\\n")
    log.read(tail=10)          # b"hello\\n"
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CAP = 10 * 1024 * 1024
_PARTIAL_LIMIT = 16 * 1024


def _stamp() -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f000Z").encode()


@dataclass(frozen=True)
class ReadOptions:
    tail: int | None = None  # last N lines
    timestamps: bool = False
    since: datetime.datetime | None = None
    limit_bytes: int | None = None


def render(record: bytes, options: ReadOptions) -> bytes | None:
    """One stored record as a reader wants it, or None when ``since`` excludes it."""
    parts = record.split(b" ", 3)
    if len(parts) < 4:
        return None
    stamp, _, tag, text = parts
    if options.since is not None:
        when = datetime.datetime.fromisoformat(stamp[:26].decode() + "+00:00")
        if when < options.since:
            return None
    line = text + (b"\n" if tag == b"F" else b"")
    return stamp + b" " + line if options.timestamps else line


def _records(paths: list[Path]) -> list[bytes]:
    lines: list[bytes] = []
    for path in paths:
        try:
            lines.extend(path.read_bytes().splitlines())
        except FileNotFoundError:
            continue
    return lines


class ContainerLog:
    """The log files of one container and the readers following it."""

    def __init__(self, folder: Path, cap: int = DEFAULT_CAP) -> None:
        self.folder = folder
        self.cap = cap
        self.current = folder / "current.log"
        self.previous = folder / "previous.log"
        self.running = False
        self._partial: dict[str, bytes] = {}
        self._followers: set[asyncio.Queue[bytes | None]] = set()

    def _parts(self, previous: bool) -> list[Path]:
        base = self.previous if previous else self.current
        return [base.with_name(base.name + ".1"), base]

    def has_previous(self) -> bool:
        return self.previous.exists()

    def new_instance(self) -> None:
        """A new container instance starts: the current log becomes the previous one."""
        self.end_instance()
        self.folder.mkdir(parents=True, exist_ok=True)
        old, new = self._parts(False), self._parts(True)
        for source, target in zip(old, new, strict=True):
            if source.exists():
                source.replace(target)
            else:
                target.unlink(missing_ok=True)
        self.current.touch()
        self.running = True

    def end_instance(self) -> None:
        """The instance ended: flush partial lines and let followers finish."""
        for stream, rest in list(self._partial.items()):
            if rest:
                self._append(stream, rest, b"P")
        self._partial.clear()
        self.running = False
        for queue in self._followers:
            queue.put_nowait(None)
        self._followers.clear()

    def write(self, stream: str, data: bytes) -> None:
        """Append output of ``stream`` ("stdout"/"stderr"); whole lines are stored as they end."""
        buffered = self._partial.get(stream, b"") + data
        *lines, rest = buffered.split(b"\n")
        for line in lines:
            self._append(stream, line, b"F")
        while len(rest) > _PARTIAL_LIMIT:
            self._append(stream, rest[:_PARTIAL_LIMIT], b"P")
            rest = rest[_PARTIAL_LIMIT:]
        self._partial[stream] = rest

    def _append(self, stream: str, text: bytes, tag: bytes) -> None:
        record = b"%s %s %s %s\n" % (_stamp(), stream.encode(), tag, text)
        with self.current.open("ab") as out:
            out.write(record)
            size = out.tell()
        if size > self.cap // 2:
            self.current.replace(self._parts(False)[0])
            self.current.touch()
        for queue in self._followers:
            queue.put_nowait(record[:-1])

    def read(self, options: ReadOptions, *, previous: bool = False) -> bytes:
        """The stored lines (of the previous instance if ``previous``) as ``options`` ask."""
        rendered = [
            line
            for record in _records(self._parts(previous))
            if (line := render(record, options)) is not None
        ]
        if options.tail is not None:
            rendered = rendered[-options.tail :] if options.tail > 0 else []
        body = b"".join(rendered)
        return body[: options.limit_bytes] if options.limit_bytes is not None else body

    async def follow(self, options: ReadOptions) -> AsyncIterator[bytes]:
        """What `read` gives, then every new line until the instance ends."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        head = self.read(options)  # no await between the read and the subscription
        if self.running:
            self._followers.add(queue)
        else:
            queue.put_nowait(None)
        sent = len(head)
        try:
            if head:
                yield head
            while (record := await queue.get()) is not None:
                line = render(record, options)
                if line is None:
                    continue
                if options.limit_bytes is not None:
                    line = line[: max(0, options.limit_bytes - sent)]
                    if not line:
                        return
                sent += len(line)
                yield line
        finally:
            self._followers.discard(queue)


class LogStore:
    """Every container log of a kubelet, found by (namespace, pod name, container name)."""

    def __init__(self) -> None:
        # (namespace, pod) -> (pod uid, its containers' logs; None for a simulated pod)
        self._pods: dict[tuple[str, str], tuple[str, dict[str, ContainerLog] | None]] = {}

    def add(self, namespace: str, pod: str, uid: str, logs: dict[str, ContainerLog] | None) -> None:
        """Register a pod's logs (``None``: a simulated pod, whose log is empty)."""
        self._pods[(namespace, pod)] = (uid, logs)

    def remove(self, namespace: str, pod: str, uid: str) -> None:
        """Forget the pod ``uid`` (not a newer pod of the same name); its followers finish."""
        known = self._pods.get((namespace, pod))
        if known is None or known[0] != uid:
            return
        del self._pods[(namespace, pod)]
        for log in (known[1] or {}).values():
            log.end_instance()

    def find(self, namespace: str, pod: str, container: str) -> ContainerLog | str | None:
        """The container's log; ``"simulated"`` for a simulated pod (an empty log); or None."""
        known = self._pods.get((namespace, pod))
        if known is None:
            return None
        if known[1] is None:
            return "simulated"
        return known[1].get(container)
