"""The HTTP edge's router and socket server (ledger/http/router.py, server.py)."""

from __future__ import annotations

import http.client

import pytest

from client.errors import DataLossError, InvalidInputError, NotFoundError, UnavailableError
from ledger.http.router import Request, Response, Route, Router
from ledger.http.server import HttpServer


def _router() -> Router:
    def hello(req: Request, m: object) -> Response:
        return Response(200, f"hello {req.arg('who', 'world')}".encode(), headers=(("Cache-Control", "max-age=5"),))

    def fail(req: Request, m: object) -> Response:
        kind = req.arg("kind")
        raise {"bad": InvalidInputError("bad N"), "gone": NotFoundError("no record"),
               "busy": UnavailableError("later"), "lost": DataLossError("/secret/path broken")}[kind]

    return Router([Route.of(r"/hello", hello), Route.of(r"/fail", fail)])


@pytest.mark.parametrize(("kind", "status", "says"), [
    ("bad", 400, "bad N"), ("gone", 404, "no record"), ("busy", 503, "later"), ("lost", 500, "internal error")])
def test_errors_map_to_one_status_each(kind: str, status: int, says: str) -> None:
    resp = _router().dispatch(Request.from_target("GET", f"/fail?kind={kind}"))
    assert resp.status == status and says in resp.body.decode()
    assert b"/secret" not in resp.body  # a damaged store's details stay in the server log


def test_paths_are_percent_decoded_and_control_characters_refused() -> None:
    assert Request.from_target("GET", "/signer/lab%20one%40x?q=1").path == "/signer/lab one@x"
    for bad in ("/a%00b", "/a%0Ab", "/%ff%fe"):
        with pytest.raises(InvalidInputError):
            Request.from_target("GET", bad)


def test_unknown_path_and_method() -> None:
    assert _router().dispatch(Request.from_target("GET", "/nope")).status == 404
    assert _router().dispatch(Request.from_target("POST", "/hello")).status == 405
    with pytest.raises(InvalidInputError):
        Request.from_target("GET", "x" * 10)


def test_socket_server_get_head_and_bad_target() -> None:
    server = HttpServer("127.0.0.1:0", _router())
    port = server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/hello?who=court")
        resp = conn.getresponse()
        assert (resp.status, resp.read(), resp.getheader("Cache-Control")) == (200, b"hello court", "max-age=5")
        conn.request("HEAD", "/hello")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length") == "11" and resp.read() == b""
        conn.request("GET", "/missing")
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        server.stop()
