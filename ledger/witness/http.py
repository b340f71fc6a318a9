"""The witness's HTTP routes (tlog-witness "HTTP Interface") on :mod:`ledger.http`'s router.

- ``POST /add-checkpoint``: :func:`ledger.witness.core.decide` on the held state, persisted by
  :meth:`WitnessState.apply` before answering;
- ``GET /<lowercase hex SHA-256 of the origin>/checkpoint``: the latest cosigned checkpoint of
  that log, with the log's verified signatures and this witness's cosignature (404 if none).

The submission and monitoring prefixes are both the server's root.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence

from client.core.cosignature import WitnessSigner
from client.errors import FormatError
from ledger.http.router import Request, Response, Route, Router
from ledger.witness.core import Decision, LogConfig, decide, parse_request
from ledger.witness.state import WitnessState

__all__ = ["build_router", "routes"]

_log = logging.getLogger(__name__)


def _respond(d: Decision) -> Response:
    return Response(d.status, d.body, d.content_type, (("Cache-Control", "no-store"),))


def routes(
    state: WitnessState,
    logs: dict[str, LogConfig],
    signers: Sequence[WitnessSigner],
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """The witness routes over ``state``, cosigning for ``logs`` with ``signers`` (``clock``: POSIX seconds)."""
    by_hash = {hashlib.sha256(o.encode()).hexdigest(): o for o in logs}

    def add_checkpoint(req: Request, m: re.Match[str]) -> Response:
        try:
            request = parse_request(req.body)
        except FormatError as e:
            return Response.text(400, f"malformed add-checkpoint request: {e}")
        origin = request.checkpoint.origin
        log = logs.get(origin)
        if log is None:  # nothing to read or write for an unknown origin
            return _respond(decide(None, None, request, int(clock()), signers))
        decision = state.apply(origin, lambda held: decide(log, held, request, int(clock()), signers))
        if decision.new_state is not None:
            _log.info("cosigned checkpoint", extra={"origin": origin, "tree_size": decision.new_state.size})
        else:
            _log.info("refused checkpoint", extra={"origin": origin, "status": decision.status,
                                                   "tree_size": request.checkpoint.size})
        return _respond(decision)

    def checkpoint(req: Request, m: re.Match[str]) -> Response:
        origin = by_hash.get(m["hash"])
        held = None if origin is None else state.latest(origin)
        if held is None:
            return Response.text(404, "this witness has cosigned no checkpoint of that log")
        return Response(200, held.note, "text/plain; charset=utf-8", (("Cache-Control", "no-store"),))

    return [
        Route.of(r"/add-checkpoint", add_checkpoint, methods=("POST",)),
        Route.of(r"/(?P<hash>[0-9a-f]{64})/checkpoint", checkpoint),
    ]


def build_router(state: WitnessState, signers: Sequence[WitnessSigner],
                 clock: Callable[[], float] = time.time) -> Router:
    """The router of a witness over ``state``, with the logs configured in it now."""
    return Router(routes(state, state.logs(), signers, clock))
