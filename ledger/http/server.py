"""The socket edge of the HTTP routes: a threaded stdlib HTTP/1.1 server in a background thread.

:class:`HttpServer` parses the request line and headers (the standard library's
``http.server``), builds a :class:`~ledger.http.router.Request`, and writes what
:meth:`Router.dispatch` answers, with ``Content-Length``; HEAD gets the headers only. A POST
must say its ``Content-Length`` (411 otherwise) of at most the server's ``max_body`` bytes (413
beyond, unread); its body is read whole into :attr:`Request.body`.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from client.errors import InvalidInputError, UnavailableError
from ledger.http.router import Request, Response, Router

_log = logging.getLogger(__name__)

MAX_BODY = 2 << 20  # bytes
"""Default cap on a POST body (a tlog-witness add-checkpoint carries a note of at most 1 MiB)."""


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) to ``(host, port)``; raises :class:`InvalidInputError`."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInputError(f"HTTP address {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "provenance-ledger"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add ~40 ms each
    router: Router  # set on the subclass made per server
    max_body: int = MAX_BODY

    def _answer(self, body: bytes = b"") -> None:
        try:
            request = Request.from_target(self.command, self.path, dict(self.headers.items()), body)
            response = self.router.dispatch(request)
        except InvalidInputError as err:
            response = Response.text(400, str(err))
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = _answer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            self._send(Response.text(411, "a POST needs a Content-Length"))
            return
        if int(length) > self.max_body:
            self.close_connection = True  # the body stays unread
            self._send(Response.text(413, f"request body over {self.max_body} bytes"))
            return
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            self.close_connection = True
            return  # the client went away mid-body
        self._answer(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        _log.debug("http %s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that went away mid-answer (or a keep-alive connection cut by stop()) is not an error of ours.
        _log.debug("HTTP connection from %s ended with an error", client_address, exc_info=True)


class HttpServer:
    """Serves ``router`` on ``listen`` from a daemon thread until :meth:`stop`."""

    def __init__(self, listen: str, router: Router, max_body: int = MAX_BODY) -> None:
        self._address = split_listen(listen)
        handler = type("Handler", (_Handler,), {"router": router, "max_body": max_body})
        self._handler = handler
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and start serving; returns the bound port. Raises :class:`UnavailableError` when it cannot bind."""
        try:
            httpd = _Server(self._address, self._handler)
        except OSError as err:
            raise UnavailableError(f"cannot listen for HTTP on {self._address[0]}:{self._address[1]}: "
                                   f"{err.strerror or err}") from err
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        self._thread.start()
        return int(httpd.server_address[1])

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
