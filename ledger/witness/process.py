"""The ``provenance witness serve`` process: key, state, HTTP server, signals.

Refuses to start without a state database (``provenance witness add-log`` creates it) or with
a key other than the one the state was first served under. Prints one line to stdout when
listening, ``witness <vkey> listening on <host>:<port>``, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from ledger.http.server import HttpServer, split_listen
from ledger.witness.http import build_router
from ledger.witness.keyfile import load_key
from ledger.witness.state import WitnessState

__all__ = ["run"]

_log = logging.getLogger(__name__)


def run(key: Path, data: Path, listen: str) -> int:
    """Serve the witness until SIGTERM/SIGINT; returns the exit status (0)."""
    host, _ = split_listen(listen)
    signer = load_key(key)
    vkey = signer.key().text()
    with WitnessState.open(data) as state:
        state.bind_key(vkey)
        logs = state.logs()
        if not logs:
            _log.warning("no logs configured: every add-checkpoint will answer 404 (see 'provenance witness add-log')")
        # Block the stop signals before the server's threads exist (they inherit the mask) and wait
        # for them with sigwait: no Python handler runs, so none can interrupt the main thread while
        # it holds a lock that the handler would need (Event.set from a handler can deadlock).
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            server = HttpServer(listen, build_router(state, [signer]))
            port = server.start()
            try:
                shown = f"[{host}]" if ":" in host else host
                print(f"witness {vkey} listening on {shown}:{port}", flush=True)
                _log.info("witness serving", extra={"logs": len(logs), "port": port})
                signal.sigwait(stop_signals)
            finally:
                server.stop()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    print("witness stopped", file=sys.stderr, flush=True)
    return 0
