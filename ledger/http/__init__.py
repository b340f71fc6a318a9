"""The HTTP read edge: plain GET/HEAD routes beside the gRPC server (``provenance serve --http HOST:PORT``).

What is served here is read-only and public: the C2SP tlog-tiles read path
(``ledger/http/tiles.py``: ``/checkpoint``, ``/tile/...``) and the explorer's HTML pages
(``ledger/http/explorer/``, under ``/``). Route modules are pure functions of a
:class:`Request` to a :class:`Response` (:mod:`ledger.http.router`), so they are tested
without sockets; :mod:`ledger.http.server` is the thin threaded socket edge. Like
``ledger/grpc/status.py`` for gRPC, :func:`ledger.http.router.status_for` is the one table
from :mod:`client.errors` to HTTP status codes.
"""
