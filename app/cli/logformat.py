"""How `qaas serve` and `qaas migrate` write their log: text lines, or JSON for log collectors.

``QAAS_LOG_FORMAT=json`` writes one JSON object a line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message`` (the formatted message) and, when an exception is logged, ``exc_info``
(its traceback as text). Nothing else of the record is added: its arguments may hold what
should stay out of a collector's index.

Example::

    configure_logging("INFO", "json")
    logging.getLogger("qaas").info("ready")   # {"time": "...", "level": "INFO", ...}
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's level and its one handler on stderr, in ``log_format``."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
