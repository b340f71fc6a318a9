"""Log formatting for ``provenance serve``: plain text or one JSON object per line.

Only the entry point calls :func:`configure_logging`; library modules log through
``logging.getLogger(__name__)`` and pass structured fields in ``extra`` (tree_size,
index, record_id...). Both formats carry those fields: JSON as keys, text as
``key=value`` after the message.

C libraries write to file descriptor 2 directly (gRPC core logs TLS handshake
failures and GOAWAYs in glog format). With JSON logs,
:func:`capture_native_stderr` routes those lines through ``logging`` too (logger
``native``), so every line of stderr stays one JSON object.

Key material never reaches the output: a field whose name says it holds a secret
(``private_key``, ``secret``, ``seed``, ``password``, ``token``) is replaced by
``"[redacted]"``, and so is any text that looks like a note signer key
(``PRIVATE+KEY+...``) or a PEM private key block, in fields and messages alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from typing import IO, Any

REDACTED = "[redacted]"
_SECRET_NAMES = re.compile(r"private|secret|seed|password|passphrase|token", re.IGNORECASE)
_SECRET_TEXT = re.compile(
    r"PRIVATE\+KEY\+\S+|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    re.DOTALL,
)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def scrub(text: str) -> str:
    """``text`` with anything that looks like private key material replaced by ``[redacted]``."""
    return _SECRET_TEXT.sub(REDACTED, text) if ("PRIVATE" in text) else text


def _value(name: str, value: Any) -> Any:
    if _SECRET_NAMES.search(name):
        return REDACTED
    if isinstance(value, bytes):
        return REDACTED if b"PRIVATE" in value else value.hex()
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller passed in ``extra``, made safe to print."""
    return {k: _value(k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)  # a field named like a core key does not overwrite it
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` on one line (tracebacks follow on their own lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = scrub(super().format(record))
        fields = extra_fields(record)
        if fields:
            tail = " ".join(f"{k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}"
                            for k, v in fields.items())
            first, nl, rest = line.partition("\n")
            line = f"{first} {tail}{nl}{rest}"
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at configuration time: a
    process that swaps stderr (a test harness, a daemoniser) never leaves the handler writing to a closed file."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(fmt: str = "text", level: str | int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``fmt`` ("text" or "json") at ``level`` and above."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)


_GLOG_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
_GLOG_PREFIX = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\] ?")


def native_record(line: str) -> tuple[int, str, dict[str, Any]]:
    """Level, message and fields of one line a C library wrote (glog format when it is one)."""
    m = _GLOG_PREFIX.match(line)
    if m is None:
        return logging.WARNING, line, {}
    return _GLOG_LEVELS[m.group(1)], line[m.end():], {"source": m.group(2)}


def capture_native_stderr() -> IO[str]:
    """Point fd 2 at a pipe whose lines are logged as records of logger ``native``; returns the real stderr.

    Call before :func:`configure_logging` and pass it the returned stream, so that
    records go to the real stderr and never back into the pipe. Python's own
    ``sys.stderr`` writes (a stray traceback) are captured too, one record per line.
    """
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    logger = logging.getLogger("native")

    def pump() -> None:
        with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as lines:
            for raw in lines:
                text = raw.rstrip("\n")
                if text:
                    level, message, fields = native_record(text)
                    logger.log(level, "%s", message, extra=fields)

    threading.Thread(target=pump, name="native-stderr", daemon=True).start()
    return real
