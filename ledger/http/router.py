"""Requests, responses and the route table of the HTTP edge. No sockets here.

A route is a compiled regular expression over the path (matched in full) and a handler
``(Request, re.Match) -> Response``. :meth:`Router.dispatch` finds the first route that
matches, answers 404 when none does and 405 when the path matches only routes of other
methods (a route takes GET and HEAD unless it names its methods, e.g. ``("POST",)``), and
turns a :class:`~client.errors.ProvenanceError` raised by a handler into a plain-text
answer with the status of :func:`status_for` (a damaged store's details stay in the
server log, as on the gRPC edge).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from client.errors import (
    DataLossError,
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProvenanceError,
    ResourceExhaustedError,
    UnavailableError,
)

_log = logging.getLogger(__name__)

MAX_PATH = 4096

STATUS_FOR_ERROR: tuple[tuple[type[ProvenanceError], int], ...] = (
    (InvalidInputError, 400),
    (NotFoundError, 404),
    (OutOfRangeError, 404),  # a tile or entry beyond the tree is not there (yet)
    (ResourceExhaustedError, 429),
    (DataLossError, 500),  # before UnavailableError: a damaged store is not worth a retry
    (UnavailableError, 503),
)
"""Errors to HTTP status codes: the first class that matches wins; anything else is 500."""


def status_for(err: ProvenanceError) -> int:
    for cls, status in STATUS_FOR_ERROR:
        if isinstance(err, cls):
            return status
    return 500


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as routes see it: method, the decoded path, the query, the headers (lower-case names)
    and the body (empty but for a POST)."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def from_target(
        cls, method: str, target: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Request:
        """From the request line's target (``/path?query``). Raises :class:`InvalidInputError` for a bad one."""
        if len(target) > MAX_PATH or not target.startswith("/"):
            raise InvalidInputError("request target must be an absolute path of at most 4096 characters")
        parts = urlsplit(target)
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError as err:
            raise InvalidInputError("request path is not percent-encoded UTF-8") from err
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
            raise InvalidInputError("request path holds control characters")
        query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=64)
        return cls(method.upper(), path, query, {k.lower(): v for k, v in (headers or {}).items()}, body)

    def arg(self, name: str, default: str = "") -> str:
        """The first value of query parameter ``name``, or ``default``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer: status, body, content type and extra headers (e.g. ``Cache-Control``)."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        return cls(status, (message.rstrip("\n") + "\n").encode("utf-8"), headers=(("Cache-Control", "no-store"),))


Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: re.Pattern[str]
    handler: Handler
    methods: tuple[str, ...] = ("GET", "HEAD")

    @classmethod
    def of(cls, pattern: str, handler: Handler, methods: tuple[str, ...] = ("GET", "HEAD")) -> Route:
        return cls(re.compile(pattern), handler, tuple(m.upper() for m in methods))


class Router:
    """The route table; :meth:`dispatch` answers every request (it never raises)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)

    def dispatch(self, request: Request) -> Response:
        allowed: list[str] = []
        for route in self._routes:
            m = route.pattern.fullmatch(request.path)
            if m is None:
                continue
            if request.method not in route.methods:
                allowed.extend(x for x in route.methods if x not in allowed)
                continue
            try:
                return route.handler(request, m)
            except ProvenanceError as err:
                status = status_for(err)
                if isinstance(err, DataLossError) or status == 500:
                    _log.error("HTTP %s %s failed: %s", request.method, request.path, err)
                    return Response.text(status, "internal error: the store could not answer (see the server log)")
                return Response.text(status, str(err))
            except Exception:
                _log.exception("HTTP %s %s failed", request.method, request.path)
                return Response.text(500, "internal error")
        if allowed:
            only = ", ".join(allowed)
            return Response(405, f"only {only}\n".encode(), headers=(("Allow", only),))
        return Response.text(404, f"no such page: {request.path[:200]}")
