"""An error, or any text, as one line a person reads: in a log line, /readyz or a status reason.

Example::

    >>> one_line(ValueError("bad\\n   value"))
    'bad value'
    >>> one_line(TimeoutError())
    'TimeoutError'
"""

from __future__ import annotations


def one_line(said: object, limit: int = 300) -> str:
    """``said`` (an error or a text) on one line of at most ``limit`` characters; an error that
    says nothing is named by its class."""
    line = " ".join(str(said).split())
    if not line and isinstance(said, BaseException):
        line = type(said).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
