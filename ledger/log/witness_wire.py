"""The log's half of the C2SP tlog-witness HTTP API: the add-checkpoint request and its answers.

https://c2sp.org/tlog-witness, "add-checkpoint": the log ``POST``\\ s to ``<submission prefix>/add-checkpoint``
the body::

    old <size the witness last cosigned, decimal>
    <base64 consistency proof hash>          (zero or more lines, none when old is 0)
    <empty line>
    <the signed checkpoint note>

A 200 answers with one or more cosignature lines (c2sp.org/tlog-cosignature); a 409 with the
witness's latest size (``<size>\\n``, ``Content-Type: text/x.tlog.size``); 403 (bad log signature),
404 (unknown log), 400 (malformed) and 422 (inconsistent: a fork, or a bad proof) are refusals the
log cannot fix by retrying the same tree. :func:`format_request` and :func:`parse_outcome` are pure;
:class:`WitnessConnection` is the one persistent HTTP/1.1 connection per witness (stdlib
``http.client``), reopened after any failure.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from client.errors import InvalidInputError

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 64 << 10  # a few cosignature lines; anything larger is not a witness's answer
_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,18}")
TERMINAL = {400: "malformed request", 403: "log signature refused", 404: "unknown log", 422: "inconsistent tree"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one add-checkpoint call came to.

    ``kind`` is ``"cosigned"`` (``lines``: the signature lines, each ending in a newline),
    ``"conflict"`` (``size``: the witness's latest size, from a 409), ``"refused"`` (a status the
    same tree cannot get past, ``detail`` the witness's text) or ``"retry"`` (a transport failure,
    a timeout or a 5xx; ``retry_after`` seconds when the witness said).
    """

    kind: str
    status: int = 0
    lines: tuple[str, ...] = ()
    size: int | None = None
    detail: str = ""
    retry_after: float | None = None


def format_request(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The add-checkpoint body. Requires no proof when ``old_size`` is 0 (tlog-witness)."""
    if old_size < 0 or (old_size == 0 and proof):
        raise InvalidInputError(f"add-checkpoint from old size {old_size} takes no proof")
    head = f"old {old_size}\n" + "".join(base64.b64encode(h).decode("ascii") + "\n" for h in proof)
    return head.encode("ascii") + b"\n" + note


def _detail(body: bytes) -> str:
    return body[:500].decode("utf-8", "replace").strip()


def parse_outcome(status: int, content_type: str | None, body: bytes, retry_after: str | None = None) -> Outcome:
    """Classify a witness's HTTP answer (status, Content-Type, body, Retry-After header)."""
    if status == 200:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome("refused", status, detail="200 with a body that is not UTF-8")
        if not text.endswith("\n"):
            return Outcome("refused", status, detail="200 with a body that does not end in a newline")
        lines = tuple(line + "\n" for line in text[:-1].split("\n"))
        if not lines or any(not line.startswith("\u2014 ") for line in lines):
            return Outcome("refused", status, detail="200 with a body that is not signature lines")
        return Outcome("cosigned", status, lines=lines)
    if status == 409:
        mime = (content_type or "").split(";", 1)[0].strip().lower()
        raw = body[:-1] if body.endswith(b"\n") else body
        if mime != SIZE_CONTENT_TYPE or not _DECIMAL.fullmatch(raw):
            return Outcome("retry", status, detail=f"409 without a {SIZE_CONTENT_TYPE} size: {_detail(body)}")
        return Outcome("conflict", status, size=int(raw))
    if status in TERMINAL:
        return Outcome("refused", status, detail=f"{TERMINAL[status]}: {_detail(body)}")
    delay: float | None = None
    if retry_after is not None and retry_after.strip().isdigit():
        delay = float(int(retry_after.strip()))
    return Outcome("retry", status, detail=f"HTTP {status}: {_detail(body)}", retry_after=delay)


def _quick_ack(conn: http.client.HTTPConnection) -> None:
    """No Nagle delay on our request, and the answer's segments acknowledged at once (Linux TCP_QUICKACK,
    which the kernel resets, so it is set per call).

    A witness whose server writes its headers and its body in two segments, with Nagle's algorithm
    on, holds the body until our ACK of the headers, which delayed ACK postpones by up to 40 ms:
    aics-witness answered in ~52 ms (p50, 100 calls) without this and ~12 ms with it.
    """
    if conn.sock is None:
        return
    try:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if quickack is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
    except OSError:
        pass


class WitnessConnection:
    """One keep-alive connection to a witness's submission prefix ``url`` (http or https). Not thread-safe:
    each witness's worker owns one."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"witness URL {url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/add-checkpoint"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._https else 'http'}://{self._host}:{self._port or ''}{self._path}"

    def add_checkpoint(self, body: bytes) -> Outcome:
        """POST ``body``; any transport failure or timeout is an ``Outcome("retry")`` (and the connection closes)."""
        for attempt in (0, 1):  # a kept-alive connection the witness closed meanwhile: one fresh retry
            fresh = self._conn is None
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self._timeout)
            try:
                if self._conn.sock is None:
                    self._conn.connect()
                _quick_ack(self._conn)
                self._conn.request("POST", self._path, body=body,
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
                _quick_ack(self._conn)
                resp = self._conn.getresponse()
                data = resp.read(MAX_RESPONSE_BYTES + 1)
                if len(data) > MAX_RESPONSE_BYTES or resp.will_close:
                    self.close()
                if len(data) > MAX_RESPONSE_BYTES:
                    return Outcome("retry", resp.status, detail="answer over 64 KiB")
                return parse_outcome(resp.status, resp.getheader("Content-Type"), data, resp.getheader("Retry-After"))
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                self.close()
                if fresh or attempt:
                    return Outcome("retry", detail=f"{type(err).__name__}: {err}")
            except (OSError, http.client.HTTPException) as err:  # refused, timed out, unreachable, garbled
                self.close()
                return Outcome("retry", detail=f"{type(err).__name__}: {err}")
        return Outcome("retry", detail="connection closed")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def abort(self) -> None:
        """From another thread: shut the socket down so a call blocked on it returns at once (as a retry)."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
