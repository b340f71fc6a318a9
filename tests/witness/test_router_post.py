"""POST routes on the HTTP edge (ledger/http): methods per route, the body, 411 without a length, 413 beyond the cap."""

from __future__ import annotations

import http.client
import re
import socket

from ledger.http.router import Request, Response, Route, Router
from ledger.http.server import HttpServer


def _router() -> Router:
    def echo(req: Request, m: re.Match[str]) -> Response:
        return Response(200, b"got " + req.body)

    def page(req: Request, m: re.Match[str]) -> Response:
        return Response(200, b"page")

    return Router([Route.of(r"/add", echo, methods=("POST",)), Route.of(r"/page", page)])


def test_dispatch_by_method() -> None:
    r = _router()
    assert r.dispatch(Request.from_target("POST", "/add", body=b"x")).body == b"got x"
    got = r.dispatch(Request.from_target("GET", "/add"))
    assert got.status == 405 and dict(got.headers)["Allow"] == "POST"
    got = r.dispatch(Request.from_target("POST", "/page"))
    assert got.status == 405 and dict(got.headers)["Allow"] == "GET, HEAD"
    assert r.dispatch(Request.from_target("POST", "/nothing")).status == 404


def test_socket_post_body_length_and_cap() -> None:
    server = HttpServer("127.0.0.1:0", _router(), max_body=100)
    port = server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/add", body=b"hello")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"got hello")
        conn.request("POST", "/add", body=b"again")  # keep-alive: the same connection serves on
        assert conn.getresponse().read() == b"got again"
        conn.request("POST", "/add", body=b"x" * 101)
        resp = conn.getresponse()
        assert resp.status == 413 and b"over 100 bytes" in resp.read()
        conn.close()

        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /add HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 411")
    finally:
        server.stop()
